"""newOrder's write (RFC 8555 §7.4): the order, its authorizations with their
challenges, and its audit row; first, when the request's nonce is still to be spent,
that spend (RFC 8555 §6.5), confirming the account as ``nonces.consume_for_account``
does.

On PostgreSQL it is one statement (storage._chain): in autocommit one round trip
instead of six (BEGIN, the spend, the order, its authorization, the audit row, COMMIT,
for an order of one name with no challenge to list), or, inside the transaction that
checks the concurrent-orders cap, one in place of a statement per row. Every insert
reads its values ``FROM`` the order's, and the order's ``FROM`` the spend when there is
one, so a nonce that was used writes nothing. On SQLite the same writes run one by one
in the caller's transaction (``Database.statement()`` is one there).

A statement's shape is the number of authorizations and of each one's challenges: it is
built and compiled once per shape, for the shapes in use (an order of one name, with
its challenges, is nearly every order). Only orders of at most ``ONE_STATEMENT_AUTHZS``
names take it (``one_statement``): a shape per order size up to a profile's
``max_identifiers`` (1000 allowed) would compile statements of thousands of CTEs, and
a client could make the server compile a new one with every order. A larger order's rows
are written one by one, in a transaction (``create`` says where it must run).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import CTE, Connection, bindparam, insert, select

from certctl.domain.model import Authorization, Order
from certctl.storage import _chain, audit_log, nonces, orders
from certctl.storage._fast import FastStatement
from certctl.storage.schema import acme_authorizations, acme_challenges, acme_orders, audit_events

# Orders of up to this many names are one statement on PostgreSQL; with at most three
# challenges each, a shape is at most 41 CTEs.
ONE_STATEMENT_AUTHZS = 8
# Shapes kept compiled; compiling one again is the only cost of a miss.
_SHAPES_KEPT = 64


def one_statement(authzs: Sequence[Authorization]) -> bool:
    """Whether ``create`` writes these rows in one statement on PostgreSQL (so it may run
    in ``Database.statement()``, in autocommit); otherwise it needs a transaction."""
    return len(authzs) <= ONE_STATEMENT_AUTHZS


@functools.lru_cache(maxsize=_SHAPES_KEPT)
def _statement(spending: bool, challenges: tuple[int, ...]) -> FastStatement:
    """``challenges``: how many challenges each authorization has, in order."""
    spent: CTE | None = nonces.account_spend_cte("spent") if spending else None
    if spent is not None:
        order = _chain.rows_after(acme_orders, orders.ORDER_KEYS, spent, "o_")
    else:
        order = insert(acme_orders).values(
            {key: bindparam("o_" + key, type_=acme_orders.c[key].type) for key in orders.ORDER_KEYS}
        )
    created = order.returning(acme_orders.c.id).cte("created")
    writes = []
    for i, count in enumerate(challenges):
        authz = _chain.rows_after(acme_authorizations, orders.AUTHZ_KEYS, created, f"z{i}_")
        writes.append(authz.cte(f"authz_{i}"))
        for j in range(count):
            challenge = _chain.rows_after(
                acme_challenges, orders.CHALLENGE_KEYS, created, f"c{i}_{j}_"
            )
            writes.append(challenge.cte(f"challenge_{i}_{j}"))
    writes.append(_chain.rows_after(audit_events, audit_log.KEYS, created, "a_").cte("audited"))
    counts = [_chain.count(created, "created")]
    if spent is not None:
        counts.append(_chain.count(spent, "spent"))
    # The rows after the order's are returned by nothing: add_cte writes them all the
    # same. A challenge's foreign key to its authorization, inserted by another CTE, is
    # checked at the end of the statement, when both exist.
    return FastStatement(select(*counts).add_cte(*writes))


def create(
    conn: Connection,
    order: Order,
    authzs: Sequence[Authorization],
    *,
    audit: Mapping[str, Any],
    spend: Mapping[str, Any] | None = None,
) -> bool:
    """Insert ``order`` with ``authzs`` (and their challenges) and ``audit`` (an
    ``audit_log.event``); first spend the nonce ``spend`` describes (the keywords of
    ``nonces.consume_for_account``), if one is given. False, with nothing written, when
    that spend did not land (the nonce was used, or the account no longer matches).

    Run it in ``Database.statement()`` when ``one_statement(authzs)``, else in
    ``Database.write()``: on PostgreSQL the larger order's rows are several statements.
    (On SQLite both are a transaction.)"""
    if conn.dialect.name != "postgresql" or not one_statement(authzs):
        if spend is not None and not nonces.consume_for_account(conn, **spend):
            return False
        orders.insert_order(conn, order, authzs)
        audit_log.record_many(conn, [audit])
        return True
    params = {
        **_chain.prefixed(orders.order_values(order), "o_"),
        **_chain.prefixed(audit, "a_"),
    }
    for i, authz in enumerate(authzs):
        params.update(_chain.prefixed(orders.authz_values(authz, order.created_at), f"z{i}_"))
        for j, challenge in enumerate(authz.challenges):
            params.update(_chain.prefixed(orders.challenge_values(challenge), f"c{i}_{j}_"))
    if spend is not None:
        params.update(nonces.account_spend(**spend))
    shape = tuple(len(a.challenges) for a in authzs)
    row = _statement(spend is not None, shape).first(conn, params)
    assert row is not None  # counts: always one row
    if spend is not None and row["spent"] != 1:
        return False
    # Without a spend nothing gates the order: it is written, or the statement raised.
    assert row["created"] == 1
    return True
