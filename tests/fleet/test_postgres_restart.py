"""PostgreSQL restarted under a running fleet: clear errors meanwhile, recovery without
manual steps afterwards.

The fleet runs on a cluster of its own (tests/fleet/cluster.py), so restarting it never
disturbs other tests. Two client threads issue through haproxy the whole time.

1. ``pg_ctlcluster ... restart`` mid-run: the flows that hit the restart fail with a
   problem document and are retried; new flows succeed within RECOVERY_BOUND_S.
2. An outage held open (stop, RAW probes for OUTAGE_S, start), so that requests certainly
   meet a database that is down: each gets a 500 ``serverInternal`` problem document, no
   traceback, within PROBE_BOUND_S; after the start, new flows succeed again within
   RECOVERY_BOUND_S (the first statement on a dead connection invalidates the pool).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from acme import errors as acme_errors
from acme import messages

from certctl.ra.gc import STUCK_AFTER
from tests.fleet.cluster import Cluster, private_cluster
from tests.fleet.conftest import FLEET_ENV, track
from tests.fleet.helpers import (
    PROBLEM,
    Direct,
    DirectAccount,
    FleetDb,
    FlowLoad,
    Record,
    assert_inventory,
    fleet_client,
    head_problem,
    is_problem,
    reconcile_stuck,
)
from tests.integration.wire import Key
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]

THREADS = 2
OUTAGE_S = 3.0
PROBE_ROUNDS = 10
PROBE_BOUND_S = 10.0
RECOVERY_BOUND_S = 15.0
# What a client may meet while the database is away, and retry.
RETRYABLE = frozenset({"serverInternal"})

Probe = tuple[str, float, httpx.Response]  # (request, seconds, answer)


def test_postgres_restart_under_load(
    tmp_path: Path,
    haproxy_bin: str,
    request: pytest.FixtureRequest,
    record_property: Record,
) -> None:
    with private_cluster() as cluster:
        url = cluster.create_database("certctl")
        with Fleet(tmp_path / "fleet", url, env=FLEET_ENV) as fleet:
            track(request, fleet)
            db = FleetDb(fleet.database_url)
            raw = Direct(fleet, None)  # through haproxy, raw JWS
            account = raw.new_account()
            load = FlowLoad(fleet, "pg", THREADS, RETRYABLE, connection_errors=False)
            load.start()
            try:
                time.sleep(2)
                restart_s, after_restart_s = _restart(fleet, cluster)
                probes, outage_s, after_outage_s = _outage(fleet, cluster, raw, account)
                time.sleep(1)
            finally:
                load.stop()
                cluster.ensure_running()

            slowest = _check_probes(probes)
            assert not load.unclean, "\n".join(load.unclean)
            assert load.serials, "the load never issued"
            assert_inventory(db, load.serials)
            # Finalizes cut by the database going away may have left orders processing:
            # the GC finishes them once STUCK_AFTER old (simulated by ageing them).
            stuck, _ = reconcile_stuck(db, STUCK_AFTER)
            assert_inventory(db, load.serials)
            raw.close()

    record_property("fleet_pg_restart_command_s", round(restart_s, 2))
    record_property("fleet_pg_first_flow_ok_after_restart_s", round(after_restart_s, 2))
    record_property("fleet_pg_outage_s", round(outage_s, 2))
    record_property("fleet_pg_first_flow_ok_after_start_s", round(after_outage_s, 2))
    record_property("fleet_pg_outage_probes", len(probes))
    answers = sorted({f"{n}:{r.status_code}" for n, _, r in probes})
    record_property("fleet_pg_outage_answers", " ".join(answers))
    record_property("fleet_pg_outage_slowest_probe_s", round(slowest, 2))
    record_property("fleet_pg_load_flows", len(load.serials))
    record_property("fleet_pg_load_retried_problems", len(load.clean))
    record_property("fleet_pg_orders_left_processing", len(stuck))


def _restart(fleet: Fleet, cluster: Cluster) -> tuple[float, float]:
    """``pg_ctlcluster ... restart`` mid-run: (its duration, seconds from its return to
    the first complete new flow)."""
    started = time.monotonic()
    cluster.ctl("restart")
    took = time.monotonic() - started
    return took, _time_to_recover(fleet, "after-restart")


def _outage(
    fleet: Fleet, cluster: Cluster, raw: Direct, account: DirectAccount
) -> tuple[list[Probe], float, float]:
    """Stop, probe for OUTAGE_S, start: (the probes, the outage's length, seconds from the
    start's return to the first complete new flow)."""
    nonces = [raw.nonce() for _ in range(2 * PROBE_ROUNDS)]
    probes: list[Probe] = []
    cluster.ctl("stop")
    try:
        down_at = time.monotonic()
        for _ in range(PROBE_ROUNDS):
            for name, send in _probes(raw, account, nonces):
                started = time.monotonic()
                response = send()
                probes.append((name, time.monotonic() - started, response))
            time.sleep(OUTAGE_S / PROBE_ROUNDS)
        outage_s = time.monotonic() - down_at
    finally:
        cluster.ensure_running()
    return probes, outage_s, _time_to_recover(fleet, "after-outage")


def _check_probes(probes: list[Probe]) -> float:
    """Every answer during the outage came in time; whatever needed the database is a 500
    serverInternal problem document without internals. The slowest answer's seconds."""
    assert probes, "no request was made during the outage"
    slowest = max(elapsed for _, elapsed, _ in probes)
    assert slowest < PROBE_BOUND_S, slowest
    failed = [(n, r) for n, _, r in probes if r.status_code != 200 or n == "new-account"]
    for name, response in failed:
        if response.request.method == "HEAD":  # no body: the status and type tell
            assert response.status_code == 500, (name, response.status_code)
            assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
            continue
        assert is_problem(response, 500, "serverInternal"), (name, response.text)
        assert "Traceback" not in response.text, response.text
        assert "psycopg" not in response.text, response.text
    assert any(n in {"new-account", "new-order"} for n, _ in failed), probes
    return slowest


def _time_to_recover(fleet: Fleet, label: str) -> float:
    """Seconds until a new flow (a new account, then order, finalize, download) completes;
    attempts that meet the database still away must fail with serverInternal."""
    back_at = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            client = fleet_client(fleet.directory_url, fleet.root_pem_path)
            client.register()
            client.issue(f"{label}-{attempt}.pg.fleet.test")
            return time.monotonic() - back_at
        except messages.Error as exc:
            assert exc.code in RETRYABLE, exc
        except acme_errors.ClientError as exc:
            assert head_problem(exc, 500), exc
        assert time.monotonic() - back_at < RECOVERY_BOUND_S, f"{label}: no recovery"
        time.sleep(0.1)


def _probes(
    raw: Direct, account: DirectAccount, nonces: list[str]
) -> list[tuple[str, Callable[[], httpx.Response]]]:
    """One round of requests for a database that is down; the JWS ones use nonces taken
    before the outage (a nonce is an HMAC token, but spending it needs the database)."""
    new_account_url, new_order_url = raw["newAccount"], raw["newOrder"]
    identifiers = [{"type": "dns", "value": "down.pg.fleet.test"}]

    def new_account() -> httpx.Response:
        payload = {"termsOfServiceAgreed": True}
        return raw.post(
            new_account_url, raw.body(Key.ec256(), new_account_url, payload, nonce=nonces.pop())
        )

    def new_order() -> httpx.Response:
        payload = {"identifiers": identifiers}
        body = raw.body(account.key, new_order_url, payload, kid=account.url, nonce=nonces.pop())
        return raw.post(new_order_url, body)

    def directory() -> httpx.Response:
        return raw.http.get(raw.local(raw.fleet.directory_url))

    def new_nonce() -> httpx.Response:
        return raw.http.head(raw.local(raw["newNonce"]))

    return [
        ("new-account", new_account),
        ("new-order", new_order),
        ("directory", directory),
        ("new-nonce", new_nonce),
    ]
