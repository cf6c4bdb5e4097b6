"""newOrder's write (storage.new_orders): one statement on PostgreSQL, a sequence in one
transaction on SQLite, with the same outcome on both."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from certctl.domain.model import Account, AuthzStatus, Order
from certctl.storage import audit_log, new_orders, nonces, orders
from certctl.storage.db import Database
from certctl.storage.schema import (
    acme_authorizations,
    acme_challenges,
    acme_orders,
    audit_events,
)
from tests.unit.storage.helpers import (
    NONCE_EXPIRES,
    NOW,
    build_order,
    new_account,
    nonce_spent,
    seed_profile,
    spend_of,
)


def _account(db: Database) -> Account:
    with db.write() as conn:
        seed_profile(conn)
        return new_account(conn)


def _event(order: Order) -> dict[str, Any]:
    return audit_log.event(
        at=NOW,
        actor="acme-account:test",
        action="acme_order_created",
        object_type="acme_order",
        object_id=order.id,
    )


def _rows(db: Database) -> tuple[int, int, int, int]:
    """How many orders, authorizations, challenges and audit rows are stored."""
    with db.read() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (acme_orders, acme_authorizations, acme_challenges, audit_events)
        )


@pytest.mark.parametrize(
    ("names", "challenge_types"),
    [
        pytest.param(("a.example",), (), id="one-name-no-challenge"),
        pytest.param(("a.example",), ("http-01", "dns-01", "tls-alpn-01"), id="one-name"),
        pytest.param(("a.example", "b.example", "c.example"), ("dns-01",), id="three-names"),
    ],
)
def test_create_writes_every_row_and_spends_the_nonce(
    db: Database, names: tuple[str, ...], challenge_types: tuple[str, ...]
) -> None:
    account = _account(db)
    order, authzs = build_order(
        account, names, authz_status=AuthzStatus.PENDING, challenge_types=challenge_types
    )
    with db.statement() as conn:
        assert new_orders.create(
            conn, order, authzs, audit=_event(order), spend=spend_of(account, "n-1")
        )
    assert nonce_spent(db, "n-1")
    assert _rows(db) == (1, len(names), len(names) * len(challenge_types), 1)
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
        assert found is not None
        stored, statuses = found
        assert (stored.identifiers, stored.expires_at) == (order.identifiers, order.expires_at)
        assert [s for s, _ in statuses] == [AuthzStatus.PENDING] * len(names)
        for authz in authzs:
            read = orders.get_authz(conn, authz.id)
            assert read is not None
            assert sorted(c.id for c in read.challenges) == sorted(c.id for c in authz.challenges)
        assert len(audit_log.list_for(conn, "acme_order", order.id)) == 1


def test_create_without_a_nonce_still_writes(db: Database) -> None:
    account = _account(db)
    order, authzs = build_order(account)
    with db.statement() as conn:
        assert new_orders.create(conn, order, authzs, audit=_event(order))
    assert _rows(db) == (1, 1, 1, 1)


@pytest.mark.parametrize("why", ["used-nonce", "changed-key"])
def test_create_whose_spend_does_not_land_writes_nothing(db: Database, why: str) -> None:
    account = _account(db)
    first, first_authzs = build_order(account)
    with db.statement() as conn:
        assert new_orders.create(
            conn, first, first_authzs, audit=_event(first), spend=spend_of(account, "n-1")
        )
    order, authzs = build_order(account, ("b.example",))
    spend = (
        spend_of(account, "n-1")
        if why == "used-nonce"
        else spend_of(account, "n-2", jwk_json='{"kty":"EC"}')
    )
    with db.statement() as conn:
        assert not new_orders.create(conn, order, authzs, audit=_event(order), spend=spend)
    assert _rows(db) == (1, 1, 1, 1)  # the first order's only
    assert not nonce_spent(db, "n-2")


@pytest.mark.parametrize("spent_before", [False, True])
def test_an_order_past_the_one_statement_size_is_written_in_a_transaction(
    db: Database, spent_before: bool
) -> None:
    """More names than ONE_STATEMENT_AUTHZS: no statement of that shape is built; the rows
    go one by one in the caller's transaction, and a used nonce still writes nothing."""
    account = _account(db)
    names = tuple(f"n{i}.example" for i in range(new_orders.ONE_STATEMENT_AUTHZS + 1))
    order, authzs = build_order(account, names, challenge_types=("dns-01",))
    assert not new_orders.one_statement(authzs)
    assert new_orders.one_statement(authzs[:-1])
    if spent_before:
        with db.write() as conn:
            nonces.consume(conn, "n-big", NONCE_EXPIRES)
    built = new_orders._statement.cache_info().misses
    with db.write() as conn:
        created = new_orders.create(
            conn, order, authzs, audit=_event(order), spend=spend_of(account, "n-big")
        )
    assert new_orders._statement.cache_info().misses == built  # no statement of its shape
    assert created is not spent_before
    expected = (0, 0, 0, 0) if spent_before else (1, len(names), len(names), 1)
    assert _rows(db) == expected
