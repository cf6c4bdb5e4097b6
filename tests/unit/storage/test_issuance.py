"""The finalize writes (storage.issuance): one statement each on PostgreSQL, a sequence in
one transaction on SQLite, with the same outcome on both for every branch."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from certctl.domain.model import Account, AuthzStatus, CertificateVersion, Order, OrderStatus
from certctl.storage import audit_log, inventory, issuance, nonces, orders
from certctl.storage.db import Database
from certctl.storage.schema import (
    acme_authorizations,
    acme_orders,
    audit_events,
    managed_certificates,
)
from tests.unit.storage.helpers import (
    NONCE_EXPIRES,
    NOW,
    new_account,
    new_order,
    new_version,
    nonce_spent,
    seed_profile,
    spend_of,
)


def _setup(db: Database) -> tuple[Account, Order]:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        return account, new_order(conn, account)


def _event(order_id: str, action: str = "acme_order_processing") -> dict[str, Any]:
    return audit_log.event(
        at=NOW,
        actor="acme-account:test",
        action=action,
        object_type="acme_order",
        object_id=order_id,
        details={"serial": "ab"},
    )


def _claim(
    db: Database, order: Order, spend: dict[str, Any] | None, serial: str = "ab"
) -> tuple[bool, bool]:
    with db.statement() as conn:
        return issuance.claim(conn, order.id, serial, NOW, audit=_event(order.id), spend=spend)


def _state(db: Database, order: Order) -> tuple[OrderStatus, str | None, int]:
    """The order's stored status and reserved serial, and how many audit rows it has."""
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
        assert found is not None
        audited = len(audit_log.list_for(conn, "acme_order", order.id))
        reserved = conn.execute(
            select(acme_orders.c.reserved_serial).where(acme_orders.c.id == order.id)
        ).scalar_one()
    return found[0].stored_status, reserved, audited


def test_claim_spends_the_nonce_moves_the_order_and_audits_it(db: Database) -> None:
    account, order = _setup(db)
    assert _claim(db, order, spend_of(account, "n-1")) == (True, True)
    assert _state(db, order) == (OrderStatus.PROCESSING, "ab", 1)
    assert nonce_spent(db, "n-1")


def test_claim_without_a_nonce_still_claims(db: Database) -> None:
    _, order = _setup(db)
    assert _claim(db, order, None) == (True, True)
    assert _state(db, order) == (OrderStatus.PROCESSING, "ab", 1)


def test_claim_with_a_used_nonce_writes_nothing(db: Database) -> None:
    account, order = _setup(db)
    with db.write() as conn:
        assert nonces.consume(conn, "n-used", NONCE_EXPIRES)
    assert _claim(db, order, spend_of(account, "n-used")) == (False, False)
    assert _state(db, order) == (OrderStatus.PENDING, None, 0)


def test_claim_for_a_changed_account_key_writes_nothing(db: Database) -> None:
    account, order = _setup(db)
    assert _claim(db, order, spend_of(account, "n-key", jwk_json='{"kty":"EC"}')) == (False, False)
    assert _state(db, order) == (OrderStatus.PENDING, None, 0)
    assert not nonce_spent(db, "n-key")


def test_claim_of_an_order_already_claimed_spends_the_nonce_only(db: Database) -> None:
    account, order = _setup(db)
    assert _claim(db, order, None, serial="01") == (True, True)
    assert _claim(db, order, spend_of(account, "n-late"), serial="02") == (True, False)
    # The first claim's serial and audit row only; the refused request used its nonce.
    assert _state(db, order) == (OrderStatus.PROCESSING, "01", 1)
    assert nonce_spent(db, "n-late")


def test_concurrent_claims_let_exactly_one_win(db: Database) -> None:
    account, order = _setup(db)
    threads = 8
    barrier = threading.Barrier(threads)

    def attempt(i: int) -> tuple[bool, bool]:
        barrier.wait(timeout=30)
        return _claim(db, order, spend_of(account, f"n-race-{i}"), serial=f"{i + 1:x}")

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(attempt, range(threads)))
    assert all(spent for spent, _ in results)
    assert [claimed for _, claimed in results].count(True) == 1
    assert _state(db, order)[::2] == (OrderStatus.PROCESSING, 1)


def _set_authzs(conn: Connection, order: Order, **values: Any) -> None:
    conn.execute(
        update(acme_authorizations)
        .where(acme_authorizations.c.order_id == order.id)
        .values(**values)
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"status": AuthzStatus.DEACTIVATED.value}, id="authz-deactivated"),
        pytest.param({"status": AuthzStatus.INVALID.value}, id="authz-invalid"),
        pytest.param({"status": AuthzStatus.PENDING.value}, id="authz-pending"),
        pytest.param({"expires_at": NOW}, id="authz-expired"),
    ],
)
def test_claim_of_an_order_no_longer_ready_spends_the_nonce_only(
    db: Database, change: dict[str, Any]
) -> None:
    """RFC 8555 §7.1.6: the claim is granted only to an order ready when it runs, not as
    the finalize's earlier read saw it (CAA lookups come between)."""
    account, order = _setup(db)
    with db.write() as conn:
        _set_authzs(conn, order, **change)
    assert _claim(db, order, spend_of(account, "n-late")) == (True, False)
    assert _state(db, order) == (OrderStatus.PENDING, None, 0)
    assert nonce_spent(db, "n-late")


def test_claim_of_an_expired_order_claims_nothing(db: Database) -> None:
    _, order = _setup(db)
    with db.write() as conn:
        conn.execute(update(acme_orders).where(acme_orders.c.id == order.id).values(expires_at=NOW))
    assert _claim(db, order, None) == (True, False)
    assert _state(db, order) == (OrderStatus.PENDING, None, 0)


@pytest.mark.postgres
def test_a_claim_waits_for_a_deactivation_in_flight_and_then_refuses(postgres_url: str) -> None:
    """READ COMMITTED: the claim's snapshot is taken before the deactivation commits; the
    claim must still see it (FOR SHARE), or the order would be issued for an authorization
    its client had deactivated."""
    db = Database(postgres_url)
    db.migrate()
    try:
        _, order = _setup(db)
        with ThreadPoolExecutor(1) as pool, db.write() as conn:
            _set_authzs(conn, order, status=AuthzStatus.DEACTIVATED.value)
            claim = pool.submit(_claim, db, order, None)
            with pytest.raises(TimeoutError):
                claim.result(timeout=1.0)  # waiting for the deactivation's row lock
        assert claim.result(timeout=30) == (True, False)
        assert _state(db, order) == (OrderStatus.PENDING, None, 0)
    finally:
        db.dispose()


def _record(db: Database, order: Order, version: CertificateVersion) -> bool:
    certificate, row = inventory.certificate_rows(
        version, name=f"acme-{order.id}", common_name="a.example", sans=["a.example"], now=NOW
    )
    events = (_event(order.id, "certificate_created"), _event(order.id, "acme_order_finalized"))
    with db.statement() as conn:
        return issuance.record(
            conn, order.id, NOW, certificate=certificate, version=row, audit=events
        )


def _certificates(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(select(func.count()).select_from(managed_certificates)).scalar_one()
        )


def _audit_rows(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def test_record_writes_the_certificate_and_finishes_the_order(db: Database) -> None:
    account, order = _setup(db)
    assert _claim(db, order, None) == (True, True)
    version = new_version(order, account)
    assert _record(db, order, version)
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
        stored = inventory.get_version(conn, version.id)
        names = inventory.certificate_names(conn, version.certificate_id)
    assert found is not None
    assert found[0].stored_status is OrderStatus.VALID
    assert found[0].certificate_id == version.id
    assert stored is not None
    assert (stored.serial, stored.acme_order_id, stored.not_after) == (
        version.serial,
        order.id,
        version.not_after,
    )
    assert names == ["a.example"]
    assert _state(db, order)[2] == 3  # processing, then created and finalized


def test_record_for_an_order_not_processing_writes_nothing(db: Database) -> None:
    account, order = _setup(db)
    assert not _record(db, order, new_version(order, account))
    assert _certificates(db) == 0
    assert _state(db, order) == (OrderStatus.PENDING, None, 0)


def test_a_record_that_fails_leaves_nothing_behind(db: Database) -> None:
    account, order = _setup(db)
    _, other = _setup_second_order(db, account)
    for claimed in (order, other):
        assert _claim(db, claimed, None) == (True, True)
    assert _record(db, order, new_version(order, account, serial="5e"))
    before = (_certificates(db), _audit_rows(db))
    # A serial already recorded: the version's unique key refuses it at the end, after
    # the order was finished and the certificate and audit rows written before it.
    with pytest.raises(IntegrityError):
        _record(db, other, new_version(other, account, serial="5e"))
    assert (_certificates(db), _audit_rows(db)) == before
    assert _state(db, other)[0] is OrderStatus.PROCESSING


def _setup_second_order(db: Database, account: Account) -> tuple[Account, Order]:
    with db.write() as conn:
        return account, new_order(conn, account, ("b.example",))
