"""SIGTERM drains a replica: the request in flight finishes, then the process exits.

A finalize is held inside the replica (after signing, before its certificate is recorded:
the test locks the inventory table its insert needs) when the replica gets SIGTERM. It
must still answer 200 with the valid order, and the process must exit within a few
seconds of that. Meanwhile haproxy sends new connections to the other replicas.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.fleet.helpers import Background, Direct, FleetDb, Record, fleet_client, leaf_serial
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]

HOLD_AFTER_SIGTERM_S = 1.0
EXIT_BOUND_S = 5.0


def test_sigterm_lets_the_finalize_in_flight_complete(
    fleet: Fleet, record_property: Record
) -> None:
    db = FleetDb(fleet.database_url)
    victim_index = 2
    victim = fleet.replicas[victim_index]
    direct = Direct(fleet, victim_index)
    account = direct.new_account()
    order_url, order = direct.ready_order(account, "drain.fleet.test")
    order_id = order_url.rsplit("/", 1)[1]
    body = direct.finalize_body(account, order)

    with db.holding(db.table_write_lock("managed_certificates")):
        in_flight = Background(direct.post, order["finalize"], body)
        assert db.wait_status(order_id, "processing")
        assert db.wait_blocked(1) == 1, "the finalize never reached the inventory insert"
        sigterm_at = time.monotonic()
        victim.terminate()
        # The replica is shutting down with the finalize still inside it.
        assert victim.wait_exit(HOLD_AFTER_SIGTERM_S) is None, "exited with a request in flight"
        # Its listener is closed: haproxy takes new connections elsewhere.
        client = fleet_client(fleet.directory_url, fleet.root_pem_path, keepalive=False)
        client.register()
        other_order, _ = client.order("drain-elsewhere.fleet.test")
        released_at = time.monotonic()
    in_flight.join(30)
    answered_at = time.monotonic()
    assert in_flight.error is None, in_flight.error
    response = in_flight.result
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "valid"

    status = victim.wait_exit(EXIT_BOUND_S)
    exited_at = time.monotonic()
    assert status is not None, f"still running {EXIT_BOUND_S}s after its last request"
    # uvicorn re-raises the SIGTERM once drained: a clean exit for systemd and the like.
    assert status in {0, -signal.SIGTERM}, status
    assert db.order_status(order_id) == "valid"
    record_property("fleet_drain_exit_after_last_response_s", round(exited_at - answered_at, 2))
    record_property("fleet_drain_exit_after_sigterm_s", round(exited_at - sigterm_at, 2))
    record_property("fleet_drain_held_s", round(released_at - sigterm_at, 2))

    # The fleet still issues without the drained replica.
    finished = client.acme.begin_finalization(other_order)
    assert finished.body.status.name == "valid"
    assert finished.body.certificate is not None
    chain = client.post_as_get(finished.body.certificate).text
    assert leaf_serial(chain) in {serial for _, serial, _ in db.certificates()}
    fleet.wait_status({victim.name: "DOWN"}, 10)
    direct.close()
