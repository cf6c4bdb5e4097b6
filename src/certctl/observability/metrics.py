"""Prometheus metrics: ``certctl_acme_<op>_total`` / ``_failures_total`` counters (names as
in the design notes) plus a request latency histogram per endpoint.

Those three are updated on every ACME request. In one process they are a tally of plain
numbers under one lock (``RequestTally``), turned into metric families when /metrics is
scraped: prometheus_client's own objects took a lock and a Python call per counter, per
histogram sum and per bucket, about a tenth of the server's work on a directory GET. With
several workers they stay prometheus_client's objects, whose values live in the shared
files every worker's /metrics reads (``MULTIPROC_ENV``)."""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# With several workers, `certctl serve` points this at an empty directory before the
# workers start; prometheus_client then keeps values in shared files and /metrics sums
# every worker, not just the one that happens to answer.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

ACME_OPS = (
    "directory",
    "new_nonce",
    "new_account",
    "update_account",
    "list_orders",
    "new_order",
    "order_read",
    "finalize_order",
    "cert_download",
    "authz_read",
    "challenge_respond",
    "key_change",
    "revoke_cert",
    "new_authz",
    "renewal_info",
)

LATENCY_NAME = "certctl_acme_request_duration_seconds"
LATENCY_HELP = "ACME request latency by endpoint"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _op_help(op: str) -> str:
    return f"ACME {op} requests"


def _failures_help(op: str) -> str:
    return f"ACME {op} requests that failed"


class Observe(Protocol):
    def __call__(self, op: str, seconds: float, *, failed: bool) -> None: ...


class _OpTally:
    __slots__ = ("buckets", "count", "failures", "first_seen", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.count = 0
        self.failures = 0
        self.sum = 0.0
        self.buckets = [0] * n_buckets  # per bucket, not cumulative; the last is +Inf
        self.first_seen = 0.0


class RequestTally(Collector):
    """The per-request counters and latency histogram of one process: what
    ``SharedRequests`` exposes, with the same names, labels, values and ``_created``
    samples, counted with one lock per request."""

    def __init__(self, ops: Sequence[str], buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._bounds = tuple(buckets)
        self._lock = threading.Lock()
        self._ops = {op: _OpTally(len(self._bounds) + 1) for op in ops}
        self._created = time.time()

    def observe(self, op: str, seconds: float, *, failed: bool) -> None:
        tally = self._ops[op]
        # Prometheus buckets are upper bounds, inclusive (le): the first bound >= seconds.
        index = bisect_left(self._bounds, seconds)
        with self._lock:
            if not tally.count:
                tally.first_seen = time.time()
            tally.count += 1
            if failed:
                tally.failures += 1
            tally.sum += seconds
            tally.buckets[index] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            seen = {
                op: (t.count, t.failures, t.sum, list(t.buckets), t.first_seen)
                for op, t in self._ops.items()
            }
        for op, (count, _, _, _, _) in seen.items():
            yield CounterMetricFamily(
                f"certctl_acme_{op}", _op_help(op), value=count, created=self._created
            )
        for op, (_, failures, _, _, _) in seen.items():
            yield CounterMetricFamily(
                f"certctl_acme_{op}_failures",
                _failures_help(op),
                value=failures,
                created=self._created,
            )
        latency = HistogramMetricFamily(LATENCY_NAME, LATENCY_HELP, labels=["endpoint"])
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        for op, (count, _, total, buckets, first_seen) in seen.items():
            if not count:  # as a labelled histogram: a label set appears once observed
                continue
            cumulative, running = [], 0
            for bound, n in zip(bounds, buckets, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            latency.add_metric([op], cumulative, sum_value=total)
            latency.add_sample(f"{LATENCY_NAME}_created", {"endpoint": op}, first_seen)
        yield latency


class SharedRequests:
    """The same metrics as prometheus_client's objects, for several workers: their values
    are kept in the shared files each worker's /metrics reads."""

    def __init__(self, registry: CollectorRegistry, ops: Sequence[str]) -> None:
        self.ops = {
            op: Counter(f"certctl_acme_{op}", _op_help(op), registry=registry) for op in ops
        }
        self.failures = {
            op: Counter(f"certctl_acme_{op}_failures", _failures_help(op), registry=registry)
            for op in ops
        }
        self.latency = Histogram(
            LATENCY_NAME, LATENCY_HELP, ["endpoint"], registry=registry, buckets=LATENCY_BUCKETS
        )
        self._latency_by_op: dict[str, Histogram] = {}

    def observe(self, op: str, seconds: float, *, failed: bool) -> None:
        self.ops[op].inc()
        if failed:
            self.failures[op].inc()
        child = self._latency_by_op.get(op)
        if child is None:  # labels() per call was a third of this method's cost
            child = self._latency_by_op[op] = self.latency.labels(op)
        child.observe(seconds)


EVENTS = (
    "new_account_idempotent",
    "deactivate_account",
    "new_order_rejected",
    "certificates_issued",
)


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    # One ACME request: its op's counter, failure counter and latency (``op`` in ACME_OPS).
    observe: Observe

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        if os.environ.get(MULTIPROC_ENV):
            self.observe = SharedRequests(self.registry, ACME_OPS).observe
        else:
            tally = RequestTally(ACME_OPS)
            self.registry.register(tally)
            self.observe = tally.observe
        self.events = {
            name: Counter(f"certctl_acme_{name}", name.replace("_", " "), registry=self.registry)
            for name in EVENTS
        }
        self.gc_counters = {
            name: Counter(f"certctl_acme_gc_{name}", f"GC: {name}", registry=self.registry)
            for name in (
                "runs",
                "run_failures",
                "nonces_reaped",
                "authzs_expired",
                "orders_invalidated",
                "orders_reconciled",
            )
        }
        self.validations = Counter(
            "certctl_acme_challenge_validations",
            "Challenge validations by type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        # The relying-party routes (/.well-known/pki): CRL downloads, OCSP answers by what
        # they said, CRLs signed, and requests refused by the per-client rate limit.
        self.pki_crl_requests = Counter(
            "certctl_pki_crl_requests", "CRL requests", registry=self.registry
        )
        self.pki_ocsp_requests = Counter(
            "certctl_pki_ocsp_requests",
            "OCSP requests by answer (good, revoked, unauthorized, malformed, internal)",
            ["status"],
            registry=self.registry,
        )
        self.pki_crl_generations = Counter(
            "certctl_pki_crl_generations", "CRLs signed and stored", registry=self.registry
        )
        self.pki_rate_limited = Counter(
            "certctl_pki_rate_limited",
            "PKI requests refused with 429 by the per-client rate limit",
            registry=self.registry,
        )
        # ACME rate limits: requests refused by each limit, and failed calls to the shared
        # rate-limit store (Redis), each answered from the process's own store instead.
        self.ratelimit_trips = Counter(
            "certctl_ratelimit_trips",
            "ACME requests refused with rateLimited, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.ratelimit_store_errors = Counter(
            "certctl_ratelimit_store_errors",
            "Failed calls to the shared rate-limit store (limits then hold per process)",
            registry=self.registry,
        )

    def group_commit(self) -> Callable[[int, int, int], None]:
        """Counters of SQLite's group commit, as ``WalSyncer.observe`` feeds them: commits,
        WAL syncs and failed WAL syncs since its last report. Counted as they happen, in
        prometheus_client's own counters, so several workers' values are summed like the
        rest (a collector read at scrape time would show the scraped worker's only)."""
        commits = Counter(
            "certctl_sqlite_commits", "SQLite write transactions committed", registry=self.registry
        )
        syncs = Counter(
            "certctl_sqlite_wal_syncs",
            "fdatasyncs of the SQLite WAL (group commit)",
            registry=self.registry,
        )
        failures = Counter(
            "certctl_sqlite_wal_sync_failures",
            "fdatasyncs of the SQLite WAL that failed (the answers waiting for them were not sent)",
            registry=self.registry,
        )

        def observe(new_commits: int, new_syncs: int, new_failures: int) -> None:
            if new_commits:
                commits.inc(new_commits)
            if new_syncs:
                syncs.inc(new_syncs)
            if new_failures:
                failures.inc(new_failures)

        return observe

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def gc(self, counts: dict[str, int], failed: bool) -> None:
        """One GC run: ``counts`` maps nonces_reaped, authzs_expired, ... to amounts."""
        self.gc_counters["runs"].inc()
        if failed:
            self.gc_counters["run_failures"].inc()
        for name, amount in counts.items():
            self.gc_counters[name].inc(amount)

    def crl_generated(self, _issuer_id: str) -> None:
        self.pki_crl_generations.inc()

    def validation(self, challenge_type: str, outcome: str) -> None:
        self.validations.labels(challenge_type, outcome).inc()

    def ratelimit_trip(self, limit: str) -> None:
        self.ratelimit_trips.labels(limit).inc()

    def ratelimit_store_error(self) -> None:
        self.ratelimit_store_errors.inc()

    def event(self, name: str) -> None:
        self.events[name].inc()
