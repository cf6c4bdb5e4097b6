"""newOrder's write (storage.new_orders): one statement on PostgreSQL, a sequence in one
transaction on SQLite, with the same outcome on both."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from certctl.domain.model import Account, AuthzStatus, Order
from certctl.storage import audit_log, new_orders, orders
from certctl.storage.db import Database
from certctl.storage.schema import (
    acme_authorizations,
    acme_challenges,
    acme_orders,
    audit_events,
)
from tests.unit.storage.helpers import (
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
