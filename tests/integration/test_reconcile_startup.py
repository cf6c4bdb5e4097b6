"""Orders a crash left processing are finished when the server starts, before it serves.

A served instance is stopped, two of its orders are put in ``processing`` directly in the
store (as a finalize does when it reserves the serial), one for longer than
``CERTCTL_ACME_SERVER_RECONCILE_AFTER`` and one for less, and the instance is started again
with two workers. The GC loop is off (``GC_INTERVAL=0``): its first sweep would otherwise
run right at start too, so only the start-up pass can finish the old order. The younger
one stands for another replica's finalize in flight and must be left alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certctl.storage import audit_log
from certctl.storage import orders as order_store
from certctl.storage.db import Database
from tests.integration.servers import serve
from tests.integration.wire import Account, Wire
from tests.support.server import ServedCertctl

ACME = "CERTCTL_ACME_SERVER_"
# Longer than the 2-minute default, so an order between the two shows which one applies.
RECONCILE_AFTER = timedelta(minutes=5)
WORKERS = 2
ENV = {
    ACME + "GC_INTERVAL": "0",
    ACME + "RECONCILE_AFTER": "5m",
    "CERTCTL_WORKERS": str(WORKERS),
}


def _store(served: ServedCertctl) -> Database:
    """The instance's store, as ``certctl serve`` resolves it."""
    if served.database_url:
        return Database(served.database_url)
    return Database(f"sqlite+pysqlite:///{(served.data_dir / 'certctl.db').resolve()}")


def _read(wire: Wire, account: Account, url: str) -> dict[str, Any]:
    response = wire.as_account(account, url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _startup_lines(served: ServedCertctl) -> list[dict[str, Any]]:
    """The start-up reconciliation log lines of the latest start (one per worker)."""
    text = served.log_path.read_text(errors="replace")
    latest = text.rsplit("=== start #", 1)[-1]
    lines = [json.loads(line) for line in latest.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "start-up reconciliation"]


def test_startup_finishes_orders_left_processing_past_the_threshold(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> None:
    with serve(request, tmp_path_factory, database_url, env=ENV) as served:
        wire = Wire(served)
        try:
            account = wire.new_account()
            stuck_url, _ = wire.ready_order(account, "stuck.example.test")
            live_url, _ = wire.ready_order(account, "live.example.test")
        finally:
            wire.close()
        stuck_id, live_id = (url.rsplit("/", 1)[1] for url in (stuck_url, live_url))
        served.stop()

        # What a finalize leaves behind when it dies after reserving the serial; the
        # younger one is past the default threshold but not past the configured one.
        now = datetime.now(UTC)
        db = _store(served)
        try:
            with db.write() as conn:
                began = now - RECONCILE_AFTER - timedelta(minutes=1)
                assert order_store.begin_processing(conn, stuck_id, "5e1a1", began)
                began = now - RECONCILE_AFTER + timedelta(minutes=2)
                assert order_store.begin_processing(conn, live_id, "5e1a2", began)
            served.start()  # returns once the directory answers: the pass ran before that
            with db.read() as conn:
                stuck = order_store.get_order(conn, stuck_id)
                live = order_store.get_order(conn, live_id)
                stuck_events = audit_log.list_for(conn, "acme_order", stuck_id)
                live_events = audit_log.list_for(conn, "acme_order", live_id)
        finally:
            db.dispose()

        assert stuck is not None and live is not None
        assert stuck[0].stored_status.value == "invalid"
        assert live[0].stored_status.value == "processing"
        reconciled = [e for e in stuck_events if e["action"] == "acme_order_reconciled"]
        # Both workers ran the pass as they started; the order was finished once.
        assert len(reconciled) == 1, stuck_events
        assert reconciled[0]["actor"] == "acme-system:gc"
        assert json.loads(reconciled[0]["details"])["status"] == "invalid"
        assert not [e for e in live_events if e["action"] == "acme_order_reconciled"]

        # The client sees it too (RFC 8555 §7.1.6): the order is invalid with an error
        # telling it to order again; the other is still processing.
        wire = Wire(served)
        try:
            stuck_view = _read(wire, account, stuck_url)
            live_view = _read(wire, account, live_url)
        finally:
            wire.close()
        assert stuck_view["status"] == "invalid"
        assert stuck_view["error"]["type"] == "urn:ietf:params:acme:error:serverInternal"
        assert live_view["status"] == "processing"

        lines = _startup_lines(served)
        assert len(lines) == WORKERS, lines
        assert sum(line["orders_reconciled"] for line in lines) == 1
        assert {line["older_than_s"] for line in lines} == {int(RECONCILE_AFTER.total_seconds())}
