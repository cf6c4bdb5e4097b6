"""The GC sweeps and crash reconciliation against real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from certctl.config import AcmeServerSettings
from certctl.domain.model import AuthzStatus, CertificateVersion, OrderStatus
from certctl.ra import gc
from certctl.ra.context import RAContext
from certctl.storage import audit_log, inventory, nonces, orders
from certctl.storage.db import Database
from certctl.storage.schema import used_nonces
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile


def ctx_at(db: Database, now: datetime, reconcile_after: timedelta | None = None) -> RAContext:
    settings = AcmeServerSettings()
    if reconcile_after is not None:
        settings = AcmeServerSettings(reconcile_after=reconcile_after)
    return RAContext(db, lambda: now, settings)


def test_sweep_expires_state_and_audits_each_object(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        pending = new_order(conn, account, ["p.example"], authz_status=AuthzStatus.PENDING)
        fresh = new_order(conn, account, ["f.example"], created_at=NOW + timedelta(days=2))
        nonces.consume(conn, "old-nonce", NOW - timedelta(minutes=1))
        nonces.consume(conn, "live-nonce", NOW + timedelta(days=9))
    later = NOW + timedelta(days=1, minutes=1)  # past the first order's 24 h expiry
    counts = gc.sweep(ctx_at(db, later))
    assert (counts.nonces, counts.authzs, counts.orders) == (1, 1, 1)
    with db.read() as conn:
        left = {r.nonce for r in conn.execute(select(used_nonces.c.nonce))}
        got = orders.get_order(conn, pending.id)
        assert got is not None
        expired_order, authz_rows = got
        fresh_order = orders.get_order(conn, fresh.id)
        order_audit = audit_log.list_for(conn, "acme_order", pending.id)
        authz_audit = audit_log.list_for(conn, "acme_authorization", expired_order.authz_ids[0])
    assert left == {"live-nonce"}
    assert expired_order.stored_status is OrderStatus.INVALID and expired_order.error
    assert [s for s, _ in authz_rows] == [AuthzStatus.EXPIRED]
    assert fresh_order is not None and fresh_order[0].stored_status is OrderStatus.PENDING
    assert [e["actor"] for e in order_audit] == ["acme-system:gc"]
    assert [e["action"] for e in authz_audit] == ["acme_authz_expired"]
    # A second sweep finds nothing more to do.
    again = gc.sweep(ctx_at(db, later))
    assert (again.nonces, again.authzs, again.orders) == (0, 0, 0)


def _version(order_id: str, account_id: str, profile_id: str, issuer_id: str) -> CertificateVersion:
    return CertificateVersion(
        id="cert-" + order_id,
        certificate_id="mc-" + order_id,
        serial=order_id.encode().hex()[:30],
        fingerprint_sha256=order_id.encode().hex().ljust(64, "0")[:64],
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        pem_chain="PEM",
        csr_pem="CSR",
        key_algorithm="ECDSA",
        key_size=256,
        source="acme",
        profile_id=profile_id,
        issuer_id=issuer_id,
        acme_account_id=account_id,
        acme_order_id=order_id,
        created_at=NOW,
    )


def test_orders_left_processing_are_reconciled(db: Database) -> None:
    with db.write() as conn:
        profile = seed_profile(conn)
        account = new_account(conn)
        signed = new_order(conn, account, ["s.example"])
        lost = new_order(conn, account, ["l.example"])
        live = new_order(conn, account, ["v.example"])
        for order, at in ((signed, NOW), (lost, NOW), (live, NOW + timedelta(minutes=9))):
            assert orders.begin_processing(conn, order.id, "ab" + order.id[-6:], at)
        # The crash came after the certificate was recorded for one of them.
        version = _version(signed.id, account.id, profile.id, profile.issuer_id)
        inventory.insert_certificate(
            conn, version, name="n", common_name="s.example", sans=["s.example"], now=NOW
        )
    assert gc.reconcile(ctx_at(db, NOW + timedelta(minutes=10))) == 2
    with db.read() as conn:
        states = {o.id: orders.get_order(conn, o.id) for o in (signed, lost, live)}
    signed_order = states[signed.id]
    lost_order = states[lost.id]
    live_order = states[live.id]
    assert signed_order and signed_order[0].stored_status is OrderStatus.VALID
    assert signed_order[0].certificate_id == version.id
    assert lost_order and lost_order[0].stored_status is OrderStatus.INVALID
    assert lost_order[0].error and "interrupted" in lost_order[0].error
    # One still inside the grace period is someone's live finalize: left alone.
    assert live_order and live_order[0].stored_status is OrderStatus.PROCESSING


# -- the configured threshold (CERTCTL_ACME_SERVER_RECONCILE_AFTER) ----------------------

AFTER = timedelta(minutes=7)  # longer than the 2-minute default, so the setting shows


def _processing(db: Database, count: int, *, recorded: int = 0) -> list[str]:
    """``count`` orders that began processing at NOW; the first ``recorded`` of them had
    their certificate recorded before the crash. Their ids."""
    ids = []
    with db.write() as conn:
        profile = seed_profile(conn)
        account = new_account(conn)
        for i in range(count):
            order = new_order(conn, account, [f"o{i}.example"])
            assert orders.begin_processing(conn, order.id, f"cd{i:04x}", NOW)
            if i < recorded:
                version = _version(order.id, account.id, profile.id, profile.issuer_id)
                name = f"o{i}.example"
                inventory.insert_certificate(
                    conn, version, name=f"n{i}", common_name=name, sans=[name], now=NOW
                )
            ids.append(order.id)
    return ids


def _statuses(db: Database, ids: list[str]) -> list[OrderStatus]:
    with db.read() as conn:
        found = [orders.get_order(conn, i) for i in ids]
    return [f[0].stored_status for f in found if f is not None]


def test_reconcile_leaves_orders_younger_than_the_configured_threshold(db: Database) -> None:
    ids = _processing(db, 2, recorded=1)
    # Past the default (2 minutes) but not past the configured threshold; and exactly at
    # it, which is not "older than" yet: someone's finalize may still be in flight.
    for age in (timedelta(minutes=3), AFTER - timedelta(seconds=1), AFTER):
        assert gc.reconcile(ctx_at(db, NOW + age, reconcile_after=AFTER)) == 0
    assert _statuses(db, ids) == [OrderStatus.PROCESSING] * 2
    with db.read() as conn:
        assert audit_log.list_for(conn, "acme_order", ids[0]) == []


def test_reconcile_finishes_orders_older_than_the_configured_threshold(db: Database) -> None:
    signed, lost = _processing(db, 2, recorded=1)
    later = NOW + AFTER + timedelta(seconds=1)
    assert gc.reconcile(ctx_at(db, later, reconcile_after=AFTER)) == 2
    assert _statuses(db, [signed, lost]) == [OrderStatus.VALID, OrderStatus.INVALID]
    with db.read() as conn:
        for order_id, status in ((signed, "valid"), (lost, "invalid")):
            events = audit_log.list_for(conn, "acme_order", order_id)
            assert [(e["action"], e["actor"]) for e in events] == [
                ("acme_order_reconciled", "acme-system:gc")
            ]
            assert json.loads(events[0]["details"])["status"] == status
    assert gc.reconcile(ctx_at(db, later, reconcile_after=AFTER)) == 0  # nothing left


def test_an_explicit_threshold_overrides_the_setting(db: Database) -> None:
    (order_id,) = _processing(db, 1)
    ctx = ctx_at(db, NOW + timedelta(minutes=3), reconcile_after=AFTER)
    assert gc.reconcile(ctx, older_than=timedelta(minutes=2)) == 1
    assert _statuses(db, [order_id]) == [OrderStatus.INVALID]


def test_the_gc_sweep_uses_the_configured_threshold(db: Database) -> None:
    (order_id,) = _processing(db, 1)
    assert gc.sweep(ctx_at(db, NOW + timedelta(minutes=3), reconcile_after=AFTER)).reconciled == 0
    assert _statuses(db, [order_id]) == [OrderStatus.PROCESSING]
    later = NOW + AFTER + timedelta(seconds=1)
    assert gc.sweep(ctx_at(db, later, reconcile_after=AFTER)).reconciled == 1
    assert _statuses(db, [order_id]) == [OrderStatus.INVALID]


def test_the_default_threshold_is_the_documented_two_minutes() -> None:
    assert gc.STUCK_AFTER == AcmeServerSettings().reconcile_after == timedelta(minutes=2)


# -- the start-up pass -------------------------------------------------------------------


def test_startup_pass_reconciles_with_the_threshold_and_logs_the_count(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    old = _processing(db, 2, recorded=1)
    with db.write() as conn:  # a replica's finalize in flight: began a minute ago
        account = new_account(conn)
        live = new_order(conn, account, ["live.example"])
        assert orders.begin_processing(conn, live.id, "ef01", NOW + AFTER - timedelta(minutes=1))
    ctx = ctx_at(db, NOW + AFTER + timedelta(seconds=1), reconcile_after=AFTER)
    with caplog.at_level(logging.INFO, logger=gc.__name__):
        assert gc.reconcile_at_startup(ctx) == 2
    assert _statuses(db, [*old, live.id]) == [
        OrderStatus.VALID,
        OrderStatus.INVALID,
        OrderStatus.PROCESSING,
    ]
    (record,) = [r for r in caplog.records if r.getMessage() == "start-up reconciliation"]
    assert getattr(record, "fields", None) == {"orders_reconciled": 2, "older_than_s": 7 * 60}


def test_startup_pass_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No schema at all: the query fails. Start-up must go on (uvicorn would otherwise run
    # without the lifespan, so without the GC loop either).
    broken = Database(f"sqlite+pysqlite:///{tmp_path / 'empty.db'}")
    try:
        with caplog.at_level(logging.ERROR, logger=gc.__name__):
            assert gc.reconcile_at_startup(ctx_at(broken, NOW)) == 0
    finally:
        broken.dispose()
    assert any(r.exc_info for r in caplog.records if "start-up" in r.getMessage())


def test_workers_starting_together_finish_each_order_exactly_once(db: Database) -> None:
    """Every worker and replica runs the start-up pass as it starts, possibly at the same
    moment: one write transaction each, conditional updates, so each stuck order is
    finished and audited once, and (PostgreSQL) no deadlock between the passes."""
    ids = _processing(db, 12, recorded=4)
    ctx = ctx_at(db, NOW + AFTER + timedelta(seconds=1), reconcile_after=AFTER)
    workers = 6
    barrier = threading.Barrier(workers)
    done: list[int] = []
    errors: list[BaseException] = []

    def start_worker() -> None:
        barrier.wait()
        try:
            done.append(gc.reconcile(ctx))
        except BaseException as exc:  # surfaced below, with the failing backend
            errors.append(exc)

    threads = [threading.Thread(target=start_worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(done) == workers and sum(done) == len(ids)
    assert _statuses(db, ids) == [OrderStatus.VALID] * 4 + [OrderStatus.INVALID] * 8
    with db.read() as conn:
        for order_id in ids:
            events = audit_log.list_for(conn, "acme_order", order_id)
            assert [e["action"] for e in events] == ["acme_order_reconciled"], order_id
