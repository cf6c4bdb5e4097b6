"""A finalize's read, and its two writes, each one atomic statement on PostgreSQL
(storage._chain).

``order_and_key_refusals``: the order with its authorizations, and whether the CSR's
key is blocked or an ACME account's key, in one statement.

``claim``: the finalize gate (Boulder's began_processing; the serial is recorded before
anything is signed), its audit row and, when the request's nonce is still to be spent,
that spend (RFC 8555 §6.5), confirming the account as ``nonces.consume_for_account``
does. ``record``: the certificate, its version, the order finished with it, and the two
audit rows. (The download's read, which spends the request's nonce too, is in
storage.spending.)

On PostgreSQL each is one round trip in autocommit instead of five or six in a
transaction; on SQLite the same writes run one by one in the caller's transaction. Run
them in ``Database.statement()``, which is exactly that on each. The results are the
same on both: what a statement leaves out when its gate finds nothing, the sequence
leaves out too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, select

from certctl.domain.model import AuthzStatus, Order, OrderStatus
from certctl.storage import _chain, audit_log, inventory, nonces, orders, revocations
from certctl.storage._fast import FastStatement
from certctl.storage.schema import (
    acme_orders,
    audit_events,
    certificate_versions,
    managed_certificates,
)


def _claim_statement(*, spending: bool) -> FastStatement:
    spent = nonces.account_spend_cte("spent") if spending else None
    claim = orders.BEGIN_PROCESSING
    if spent is not None:
        claim = claim.where(exists(select(spent.c.nonce)))
    claimed = claim.returning(acme_orders.c.id).cte("claimed")
    audited = (
        _chain.rows_after(audit_events, audit_log.KEYS, claimed, "a_")
        .returning(audit_events.c.id)
        .cte("audited")
    )
    counts = [_chain.count(audited, "claimed")]
    if spent is not None:
        counts.append(_chain.count(spent, "spent"))
    return FastStatement(select(*counts))


_CLAIM = {spending: _claim_statement(spending=spending) for spending in (False, True)}


def claim(
    conn: Connection,
    order_id: str,
    serial: str,
    now: datetime,
    *,
    audit: Mapping[str, Any],
    spend: Mapping[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Move a pending order to processing with ``serial`` reserved, adding ``audit`` (an
    ``audit_log.event``); first spend the nonce ``spend`` describes (the keywords of
    ``nonces.consume_for_account``), if one is given.

    Returns (spent, claimed). Not spent: the nonce was used, or the account no longer
    matches; nothing was written. Spent but not claimed: the order was not pending (a
    concurrent finalize won); the nonce stays spent, and nothing else was written.
    """
    if conn.dialect.name != "postgresql":
        if spend is not None and not nonces.consume_for_account(conn, **spend):
            return False, False
        if not orders.begin_processing(conn, order_id, serial, now):
            return True, False
        audit_log.record_many(conn, [audit])
        return True, True
    params = {"b_id": order_id, "b_serial": serial, "b_now": now, **_chain.prefixed(audit, "a_")}
    if spend is not None:
        params.update(nonces.account_spend(**spend))
    row = _CLAIM[spend is not None].first(conn, params)
    assert row is not None  # counts: always one row
    return spend is None or row["spent"] == 1, row["claimed"] == 1


def _record_statement() -> FastStatement:
    finished = orders.FINISH_PROCESSING.returning(acme_orders.c.id).cte("finished")
    certificate = (
        _chain.rows_after(managed_certificates, inventory.CERTIFICATE_KEYS, finished, "c_")
        .returning(managed_certificates.c.id)
        .cte("certificate")
    )
    version = (
        _chain.rows_after(certificate_versions, inventory.VERSION_KEYS, certificate, "v_")
        .returning(certificate_versions.c.id)
        .cte("version")
    )
    events = [
        _chain.rows_after(audit_events, audit_log.KEYS, finished, prefix).cte(f"event_{prefix[0]}")
        for prefix in ("e_", "f_")
    ]
    # The audit rows are returned by nothing: add_cte writes them all the same.
    return FastStatement(select(_chain.count(version, "recorded")).add_cte(*events))


_RECORD = _record_statement()


def record(
    conn: Connection,
    order_id: str,
    now: datetime,
    *,
    certificate: Mapping[str, Any],
    version: Mapping[str, Any],
    audit: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> bool:
    """Finish a processing order as valid with the new certificate (``certificate`` and
    ``version``: the rows of ``inventory.certificate_rows``) and add the two ``audit``
    rows. False, with nothing written, when the order was not processing."""
    if conn.dialect.name != "postgresql":
        if not orders.finish_processing(
            conn, order_id, new=OrderStatus.VALID, now=now, certificate_id=version["id"]
        ):
            return False
        inventory.insert_rows(conn, certificate, version)
        audit_log.record_many(conn, list(audit))
        return True
    params = {
        "b_id": order_id,
        "b_status": OrderStatus.VALID.value,
        "b_cert": version["id"],
        "b_error": None,
        "b_now": now,
        **_chain.prefixed(certificate, "c_"),
        **_chain.prefixed(version, "v_"),
        **_chain.prefixed(audit[0], "e_"),
        **_chain.prefixed(audit[1], "f_"),
    }
    row = _RECORD.first(conn, params)
    assert row is not None  # counts: always one row
    return bool(row["recorded"] == 1)


_ORDER_AND_KEY_REFUSALS = FastStatement(
    select(*orders.ORDER_READ.columns, *revocations.KEY_REFUSALS)
    .select_from(orders.ORDER_READ.source)
    .where(orders.ORDER_READ.where)
    .order_by(*orders.ORDER_READ.order_by)
)


def order_and_key_refusals(
    conn: Connection, order_id: str, key_spki_sha256: str
) -> tuple[tuple[Order, list[tuple[AuthzStatus, datetime]]] | None, tuple[bool, bool]]:
    """``orders.get_order`` and ``revocations.key_refusals`` in one statement; the
    refusals are (False, False) when there is no such order."""
    rows = _ORDER_AND_KEY_REFUSALS.all(conn, {"b_id": order_id, "b_spki": key_spki_sha256})
    if not rows:
        return None, (False, False)
    return orders.order_of(rows), (bool(rows[0]["blocked"]), bool(rows[0]["account_key"]))
