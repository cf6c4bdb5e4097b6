"""Reads that spend the request's nonce in the same round trip: the POST-as-GET reads
(RFC 8555 §6.3), and a newOrder's count of open orders.

A kid request's nonce is spent in a statement that confirms its account as it spends
(``nonces.account_spend_cte``, RFC 8555 §6.5). For the reads clients poll (an order, an
authorization) and the certificate download, on PostgreSQL that spend and the read are
one statement: a one-row source outer-joined to the read, so the statement returns a row
whether or not the read found anything, and says whether the nonce was spent. The spend
is lazy, being the statement's only write (storage.nonces). On SQLite the spend and the
read run one after the other in the caller's transaction, which costs no round trip.

Each function returns whether the nonce was spent, and what was read; when the nonce was
not spent (used already, or the account changed), nothing is read, and the caller settles
the nonce the ordinary way (ra.replay). Run them in ``Database.statement()``.

A newOrder under rate limits spends its nonce before it consults them (ra.replay
``spend_first``); its pre-check of the account's open orders is read in that statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, literal, select

from certctl.domain.model import Authorization, AuthzStatus, CertificateVersion, Order
from certctl.storage import _chain, inventory, nonces, orders
from certctl.storage._fast import FastStatement
from certctl.storage.schema import certificate_versions

T = TypeVar("T")

_SPENT = nonces.account_spend_cte("spent", lazy=True)
_ONE = select(literal(1).label("one")).subquery("one")


def _spending(read: _chain.ReadById) -> FastStatement:
    """``read`` with the spend, as one statement of at least one row."""
    return FastStatement(
        select(_chain.count(_SPENT, "spent"), *read.columns)
        .select_from(_ONE.outerjoin(read.source, read.where))
        .order_by(*read.order_by)
    )


_GET_ORDER = _spending(orders.ORDER_READ)
_GET_AUTHZ = _spending(orders.AUTHZ_READ)
_OPEN_ORDERS = FastStatement(
    select(_chain.count(_SPENT, "spent"), *orders.OPEN_ORDERS_COLUMNS).where(
        orders.OPEN_ORDERS_WHERE
    )
)
_GET_VERSION = _spending(
    _chain.ReadById(
        columns=(certificate_versions,),
        source=certificate_versions,
        where=certificate_versions.c.id == bindparam("b_id"),
    )
)


def _read(
    conn: Connection,
    statement: FastStatement,
    row_id: str,
    spend: Mapping[str, Any],
    plain: Callable[[Connection, str], T | None],
    of: Callable[[Sequence[Mapping[str, Any]]], T | None],
) -> tuple[bool, T | None]:
    if conn.dialect.name != "postgresql":
        if not nonces.consume_for_account(conn, **spend):
            return False, None
        return True, plain(conn, row_id)
    rows = statement.all(conn, {"b_id": row_id, **nonces.account_spend(**spend)})
    # The one-row source: always a row; NULL read columns where the read found nothing.
    if rows[0]["spent"] != 1:
        return False, None
    return True, of([r for r in rows if r["id"] is not None])


def get_order(
    conn: Connection, order_id: str, spend: Mapping[str, Any]
) -> tuple[bool, tuple[Order, list[tuple[AuthzStatus, datetime]]] | None]:
    """``orders.get_order`` and the spend of a nonce (the keywords of
    ``nonces.consume_for_account``)."""
    return _read(conn, _GET_ORDER, order_id, spend, orders.get_order, orders.order_of)


def get_authz(
    conn: Connection, authz_id: str, spend: Mapping[str, Any]
) -> tuple[bool, Authorization | None]:
    """``orders.get_authz`` and the spend of a nonce."""
    return _read(conn, _GET_AUTHZ, authz_id, spend, orders.get_authz, orders.authz_of)


def get_version(
    conn: Connection, version_id: str, spend: Mapping[str, Any]
) -> tuple[bool, CertificateVersion | None]:
    """``inventory.get_version`` and the spend of a nonce: the certificate a download
    returns (RFC 8555 §7.4.2)."""
    return _read(conn, _GET_VERSION, version_id, spend, inventory.get_version, _version_of)


def _version_of(rows: Sequence[Mapping[str, Any]]) -> CertificateVersion | None:
    return inventory.version_of(rows[0]) if rows else None


def open_orders(
    conn: Connection, account_id: str, now: datetime, spend: Mapping[str, Any]
) -> tuple[bool, tuple[int, datetime | None] | None]:
    """``orders.open_orders`` (without the lock: a newOrder's pre-check) and the spend of
    a nonce, which a newOrder under rate limits spends before it consults them."""
    if conn.dialect.name != "postgresql":
        if not nonces.consume_for_account(conn, **spend):
            return False, None
        return True, orders.open_orders(conn, account_id, now)
    params = {"b_owner": account_id, "b_now": now, **nonces.account_spend(**spend)}
    row = _OPEN_ORDERS.first(conn, params)
    assert row is not None  # an aggregate without GROUP BY: always one row
    if row["spent"] != 1:
        return False, None
    return True, orders.open_orders_of(row)
