"""The GC sweeps and crash reconciliation against real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from certctl.config import AcmeServerSettings
from certctl.domain.model import AuthzStatus, CertificateVersion, OrderStatus
from certctl.ra import gc
from certctl.ra.context import RAContext
from certctl.storage import audit_log, inventory, nonces, orders
from certctl.storage.db import Database
from certctl.storage.schema import used_nonces
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile


def ctx_at(db: Database, now: datetime) -> RAContext:
    return RAContext(db, lambda: now, AcmeServerSettings())


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
