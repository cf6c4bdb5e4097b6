"""The one-process request tally exposes exactly what prometheus_client's objects do."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from certctl.observability.metrics import (
    ACME_OPS,
    LATENCY_BUCKETS,
    LATENCY_NAME,
    MULTIPROC_ENV,
    Metrics,
    RequestTally,
    SharedRequests,
)

# Values on, between and beyond the bucket bounds (a bound itself belongs to its bucket).
OBSERVATIONS = [
    ("directory", 0.0004, False),
    ("directory", 0.001, False),
    ("directory", 0.0010001, True),
    ("new_nonce", 0.05, False),
    ("finalize_order", 5.0, False),
    ("finalize_order", 7.5, True),
    ("finalize_order", 0.3, False),
]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _help_and_types(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {line for line in text.splitlines() if line.startswith(("# HELP", "# TYPE"))}


def test_the_tally_exposes_what_prometheus_client_objects_do() -> None:
    shared_registry, tally_registry = CollectorRegistry(), CollectorRegistry()
    shared = SharedRequests(shared_registry, ACME_OPS)
    tally = RequestTally(ACME_OPS)
    tally_registry.register(tally)
    for op, seconds, failed in OBSERVATIONS:
        shared.observe(op, seconds, failed=failed)
        tally.observe(op, seconds, failed=failed)

    want, got = _samples(shared_registry), _samples(tally_registry)
    assert set(got) == set(want)
    # Creation times differ by the microseconds between the two objects; all else equal.
    for key, value in want.items():
        if key[0].endswith("_created"):
            assert got[key] == pytest.approx(value, abs=5.0)
        else:
            assert got[key] == value, key
    assert _help_and_types(tally_registry) == _help_and_types(shared_registry)
    le = (("endpoint", "directory"), ("le", "0.001"))
    assert got[(f"{LATENCY_NAME}_bucket", le)] == 2  # 0.0004 and 0.001 itself
    inf = (("endpoint", "finalize_order"), ("le", "+Inf"))
    assert got[(f"{LATENCY_NAME}_bucket", inf)] == 3
    assert got[("certctl_acme_finalize_order_failures_total", ())] == 1


def test_an_op_never_observed_has_counters_but_no_histogram() -> None:
    registry = CollectorRegistry()
    registry.register(RequestTally(ACME_OPS))
    samples = _samples(registry)
    assert samples[("certctl_acme_directory_total", ())] == 0
    assert not [key for key in samples if key[0].startswith(LATENCY_NAME)]


def test_an_unknown_op_is_refused() -> None:
    with pytest.raises(KeyError):
        RequestTally(ACME_OPS).observe("no_such_op", 0.1, failed=False)


def test_concurrent_observations_are_all_counted() -> None:
    tally = RequestTally(ACME_OPS)
    registry = CollectorRegistry()
    registry.register(tally)
    threads, each = 8, 5_000

    def work() -> None:
        for _ in range(each):
            tally.observe("directory", 0.002, failed=True)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    samples = _samples(registry)
    assert samples[("certctl_acme_directory_total", ())] == threads * each
    assert samples[("certctl_acme_directory_failures_total", ())] == threads * each
    count = samples[(f"{LATENCY_NAME}_count", (("endpoint", "directory"),))]
    assert count == threads * each


def test_metrics_uses_the_tally_in_one_process_and_shared_objects_with_several(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    one = Metrics()
    one.observe("new_order", 0.01, failed=False)
    assert one.registry.get_sample_value("certctl_acme_new_order_total") == 1
    assert isinstance(getattr(one.observe, "__self__", None), RequestTally)

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    several = Metrics()
    assert isinstance(getattr(several.observe, "__self__", None), SharedRequests)


def test_the_buckets_are_the_documented_ones() -> None:
    registry = CollectorRegistry()
    tally = RequestTally(ACME_OPS)
    registry.register(tally)
    tally.observe("directory", 0.0, failed=False)
    bounds = {
        dict(labels)["le"]
        for name, labels in _samples(registry)
        if name == f"{LATENCY_NAME}_bucket"
    }
    assert len(bounds) == len(LATENCY_BUCKETS) + 1


def test_group_commit_counts_add_up_what_the_syncer_reports() -> None:
    metrics = Metrics()
    observe = metrics.group_commit()
    observe(12, 1, 0)
    observe(0, 4, 0)
    observe(3, 0, 1)
    text = metrics.exposition().decode()
    assert "certctl_sqlite_commits_total 15.0" in text
    assert "certctl_sqlite_wal_syncs_total 5.0" in text
    assert "certctl_sqlite_wal_sync_failures_total 1.0" in text
