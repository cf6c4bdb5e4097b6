"""Reads with their nonce spend (storage.spending), the POST-as-GET reads and newOrder's
count of open orders: one statement on PostgreSQL, the spend then the read in one
transaction on SQLite, with the same outcome on both: the nonce spent and the rows read,
or (a used nonce, a changed account key) nothing spent and nothing read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from certctl.domain.model import Account, AuthzStatus, CertificateVersion, Order
from certctl.storage import inventory, orders, spending
from certctl.storage.db import Database
from tests.unit.storage.helpers import (
    NOW,
    new_account,
    new_order,
    new_version,
    nonce_spent,
    seed_profile,
    spend_of,
)


def _setup(db: Database, **order: Any) -> tuple[Account, Order]:
    """An account and an order of two names, as read back (with its authorizations)."""
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        created = new_order(conn, account, ("b.example", "a.example"), **order)
        found = orders.get_order(conn, created.id)
    assert found is not None
    return account, found[0]


def _version(db: Database, order: Order, account: Account) -> CertificateVersion:
    version = new_version(order, account)
    with db.write() as conn:
        inventory.insert_certificate(
            conn, version, name=order.id, common_name="a.example", sans=["a.example"], now=NOW
        )
    return version


# Each read: the spending read and the plain read it must agree with.
Reader = Callable[[Any, str, dict[str, Any]], tuple[bool, Any]]
READS: dict[str, tuple[Reader, Callable[[Any, str], Any]]] = {
    "order": (spending.get_order, orders.get_order),
    "authz": (spending.get_authz, orders.get_authz),
    "version": (spending.get_version, inventory.get_version),
}


def _existing(db: Database, kind: str) -> tuple[Account, str]:
    account, order = _setup(db)
    if kind == "order":
        return account, order.id
    if kind == "authz":
        return account, order.authz_ids[0]
    return account, _version(db, order, account).id


@pytest.mark.parametrize("kind", sorted(READS))
def test_a_read_spends_the_nonce_and_reads_what_the_plain_read_does(
    db: Database, kind: str
) -> None:
    account, row_id = _existing(db, kind)
    read, plain = READS[kind]
    with db.read() as conn:
        expected = plain(conn, row_id)
    assert expected is not None
    with db.statement(promised=False) as conn:
        assert read(conn, row_id, spend_of(account, "r-1")) == (True, expected)
    assert nonce_spent(db, "r-1")
    with db.statement(promised=False) as conn:
        # Nothing found: the nonce is spent all the same (the answer is a 404).
        assert read(conn, f"{kind}-none", spend_of(account, "r-2")) == (True, None)
        # A used nonce, or a changed account key: nothing spent, nothing read.
        assert read(conn, row_id, spend_of(account, "r-1")) == (False, None)
        changed = spend_of(account, "r-3", jwk_json='{"kty":"EC"}')
        assert read(conn, row_id, changed) == (False, None)
    assert nonce_spent(db, "r-2")
    assert not nonce_spent(db, "r-3")


def test_an_authorization_is_read_with_all_its_challenges_in_type_order(db: Database) -> None:
    account, order = _setup(db, challenge_types=("tls-alpn-01", "dns-01", "http-01"))
    with db.statement(promised=False) as conn:
        spent, authz = spending.get_authz(conn, order.authz_ids[0], spend_of(account, "c-1"))
    assert spent and authz is not None
    assert [c.type for c in authz.challenges] == ["dns-01", "http-01", "tls-alpn-01"]
    assert {c.authz_id for c in authz.challenges} == {authz.id}
    with db.read() as conn:
        assert orders.get_authz(conn, authz.id) == authz


def test_an_authorization_without_challenges_reads_as_one(db: Database) -> None:
    account, order = _setup(db, challenge_types=())
    with db.statement(promised=False) as conn:
        spent, authz = spending.get_authz(conn, order.authz_ids[0], spend_of(account, "c-2"))
    assert spent and authz is not None
    assert authz.challenges == ()
    with db.read() as conn:
        assert orders.get_authz(conn, authz.id) == authz


def test_an_order_is_read_with_every_authorization(db: Database) -> None:
    account, order = _setup(db)
    with db.statement(promised=False) as conn:
        spent, found = spending.get_order(conn, order.id, spend_of(account, "o-1"))
    assert spent and found is not None
    stored, authzs = found
    assert stored.id == order.id
    assert len(stored.authz_ids) == len(authzs) == 2


def test_open_orders_are_counted_as_the_plain_count_does(db: Database) -> None:
    account, _ = _setup(db)
    with db.write() as conn:
        new_order(conn, account, created_at=NOW - timedelta(hours=1))  # expires sooner
        # Not open: a failed authorization makes its order invalid, whatever it stored.
        new_order(conn, account, authz_status=AuthzStatus.INVALID)
        expected = orders.open_orders(conn, account.id, NOW)
    assert expected == (2, NOW + timedelta(hours=23))
    with db.statement(promised=False) as conn:
        assert spending.open_orders(conn, account.id, NOW, spend_of(account, "n-1")) == (
            True,
            expected,
        )
        assert spending.open_orders(conn, "acct-none", NOW, spend_of(account, "n-2")) == (
            True,
            (0, None),
        )
        # A used nonce, or a changed account key: nothing spent, nothing counted.
        assert spending.open_orders(conn, account.id, NOW, spend_of(account, "n-1")) == (
            False,
            None,
        )
        changed = spend_of(account, "n-3", jwk_json='{"kty":"EC"}')
        assert spending.open_orders(conn, account.id, NOW, changed) == (False, None)
    assert nonce_spent(db, "n-2")
    assert not nonce_spent(db, "n-3")


@pytest.mark.postgres
@pytest.mark.parametrize("kind", sorted(READS))
def test_a_read_spends_its_nonce_lazily_on_postgresql(postgres_url: str, kind: str) -> None:
    db = Database(postgres_url, pool_size=1)
    db.migrate()
    try:
        account, row_id = _existing(db, kind)
        read, _ = READS[kind]
        with db.write(promised=False) as conn:
            assert read(conn, row_id, spend_of(account, f"lazy-{kind}"))[0]
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "off"
    finally:
        db.dispose()
