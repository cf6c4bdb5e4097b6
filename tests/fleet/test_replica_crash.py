"""A replica SIGKILLed while clients keep issuing through haproxy.

Six client threads run full ACME flows in a loop (keep-alive off, so their requests are
spread over all replicas). Mid-run one replica is killed with SIGKILL on its process group
while one of its finalizes is pinned inside the crash window: its claim (the order to
processing, the serial reserved before signing) waits on a lock the test holds on the
order's row, and reaches the database before the replica dies, so it commits once the
lock goes; the replica never signs or records. A finalize's record is one statement
(certctl.storage.issuance): once the database has it, it completes whether or not its
replica lives, so the window that leaves an order processing is the one between the claim
and the record, which this pins. haproxy's health checks take the dead replica out;
connections it refuses meanwhile are redispatched.

Then: every flow completed or failed with a clean error (the connection to the dead
replica broke) and was retried; every certificate a client received is in the inventory
exactly once; no serial twice; every certificate's order is valid and points at it; and
after certctl's reconcile (the survivors' GC) no order is left processing.
"""

from __future__ import annotations

import time

import httpx
import pytest

from certctl.ra.gc import STUCK_AFTER
from tests.fleet.helpers import (
    Background,
    Direct,
    FleetDb,
    FlowLoad,
    Record,
    assert_inventory,
    reconcile_stuck,
)
from tests.support.fleet import Fleet
from tests.support.server import run_certctl

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]

THREADS = 6
RUN_S = 20.0
KILL_AFTER_S = 7.0
DETECTION_BOUND_S = 10.0
# Client errors are expected only this soon after the kill (requests in flight on the
# dead replica); later ones would mean haproxy kept sending traffic to it.
ERROR_WINDOW_S = 5.0
# Problems a client may meet and retry: the server's own failure, a nonce race.
RETRYABLE = frozenset({"serverInternal", "badNonce"})


def test_sigkill_of_a_replica_loses_nothing(fleet: Fleet, record_property: Record) -> None:
    db = FleetDb(fleet.database_url)
    victim = fleet.replicas[1]
    direct = Direct(fleet, 1)
    account = direct.new_account()
    pinned_url, pinned = direct.ready_order(account, "pinned.crash.fleet.test")
    pinned_id = pinned_url.rsplit("/", 1)[1]
    pinned_body = direct.finalize_body(account, pinned)

    load = FlowLoad(fleet, "crash", THREADS, RETRYABLE, connection_errors=True)
    started = time.monotonic()
    load.start()
    try:
        time.sleep(KILL_AFTER_S)
        # Pin one finalize in the crash window: its claim waits on the order's row.
        with db.holding(db.row_lock("acme_orders", pinned_id)):
            in_flight = Background(direct.post, pinned["finalize"], pinned_body)
            assert db.wait_blocked(1) >= 1, "the finalize's claim never reached the database"
            killed_at = time.monotonic()
            victim.kill()
        # The claim, sent whole before the kill, commits once the lock is gone.
        assert db.wait_status(pinned_id, "processing")
        in_flight.join(30)
        fleet.wait_status({victim.name: "DOWN"}, DETECTION_BOUND_S)
        detected_after = time.monotonic() - killed_at
        time.sleep(max(0.0, started + RUN_S - time.monotonic()))
    finally:
        load.stop()

    # The pinned finalize died with its replica: a broken connection, no answer.
    assert isinstance(in_flight.error, httpx.TransportError), (in_flight.error, in_flight.result)

    # Clients saw only clean, retryable errors, and only around the kill.
    assert not load.unclean, "\n".join(load.unclean)
    late = [(round(t - killed_at, 2), w) for t, w in load.clean if t > killed_at + ERROR_WINDOW_S]
    assert not late, f"errors long after the kill: {late}"
    after_kill = [t for t in load.completed_at if t > killed_at]
    assert after_kill, "no flow completed after the kill"

    # Every certificate a client received is recorded exactly once; serials are unique.
    assert_inventory(db, load.serials)
    listed = run_certctl(
        ["cert", "list", "--data-dir", str(fleet.data_dir), "--limit", "100000"],
        fleet.database_url,
    )
    assert listed.returncode == 0, listed.stderr
    assert set(load.serials) <= {_canonical(token) for token in listed.stdout.split()}

    # Orders the crash left processing are finished by the survivors' GC. Its threshold
    # (STUCK_AFTER, 2 minutes) is simulated: the orders are aged by it, then timed.
    stuck, reconciled_after = reconcile_stuck(db, STUCK_AFTER)
    assert pinned_id in stuck
    assert db.order_status(pinned_id) == "invalid"  # its certificate was never recorded
    assert_inventory(db, load.serials)

    record_property("fleet_flows_completed", len(load.serials))
    record_property("fleet_flows_completed_after_kill", len(after_kill))
    record_property("fleet_clean_errors", len(load.clean))
    record_property("fleet_orders_left_processing_by_the_kill", len(stuck))
    record_property("fleet_haproxy_detection_s", round(detected_after, 2))
    record_property("fleet_reconcile_after_stuck_threshold_s", round(reconciled_after, 2))
    direct.close()


def _canonical(token: str) -> str:
    return token.replace(":", "").lower().lstrip("0")
