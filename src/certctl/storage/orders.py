"""Orders, authorizations and challenges. Transitions are compare-and-set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, func, or_, select, update

from certctl.domain.model import (
    Authorization,
    AuthzStatus,
    Challenge,
    ChallengeStatus,
    Identifier,
    Order,
    OrderStatus,
)
from certctl.storage import _chain, _json
from certctl.storage._fast import FastStatement
from certctl.storage.schema import (
    acme_accounts,
    acme_authorizations,
    acme_challenges,
    acme_orders,
)

# Statements every issuance runs are built once (building one per call, with its cache
# key, costs several times its execution); values and keys come as parameters.
ORDER_KEYS = (
    "id",
    "account_id",
    "profile_id",
    "status",
    "identifiers",
    "not_before",
    "not_after",
    "expires_at",
    "created_at",
    "updated_at",
    "replaces",
)
AUTHZ_KEYS = (
    "id",
    "order_id",
    "account_id",
    "identifier_type",
    "identifier_value",
    "status",
    "expires_at",
    "created_at",
    "validated_at",
)
CHALLENGE_KEYS = ("id", "authz_id", "type", "token", "status", "validated_at", "error")
_INSERT_ORDER = FastStatement(acme_orders.insert(), keys=ORDER_KEYS)
_INSERT_AUTHZ = FastStatement(acme_authorizations.insert(), keys=AUTHZ_KEYS)
_INSERT_CHALLENGE = FastStatement(acme_challenges.insert(), keys=CHALLENGE_KEYS)
# The order and its authorizations in one statement (one round trip on PostgreSQL, one
# snapshot): a row per authorization (its id, status and expiry), the order's columns
# repeated on each.
ORDER_READ = _chain.ReadById(
    columns=(
        acme_orders,
        acme_authorizations.c.id.label("authz_id"),
        acme_authorizations.c.status.label("authz_status"),
        acme_authorizations.c.expires_at.label("authz_expires_at"),
    ),
    source=acme_orders.outerjoin(
        acme_authorizations, acme_authorizations.c.order_id == acme_orders.c.id
    ),
    where=acme_orders.c.id == bindparam("b_id"),
    order_by=(acme_authorizations.c.identifier_value, acme_authorizations.c.id),
)
_GET_ORDER = FastStatement(ORDER_READ.select())
# An authorization with its challenges: one statement (one round trip on PostgreSQL),
# one row per challenge, or one with NULL challenge columns when it has none.
AUTHZ_READ = _chain.ReadById(
    columns=(acme_authorizations, *(c.label(f"ch_{c.key}") for c in acme_challenges.c)),
    source=acme_authorizations.outerjoin(
        acme_challenges, acme_challenges.c.authz_id == acme_authorizations.c.id
    ),
    where=acme_authorizations.c.id == bindparam("b_id"),
    order_by=(acme_challenges.c.type,),
)
_GET_AUTHZ = FastStatement(AUTHZ_READ.select())
# The finalize's two compare-and-set transitions; storage.issuance builds them into its
# one-statement writes (parameters b_id, b_serial, b_now; b_id, b_status, b_cert,
# b_error, b_now).
_CLAIM_NOW = bindparam("b_now", type_=acme_orders.c.updated_at.type)
# The order's authorizations as they stand when the claim runs. On PostgreSQL (READ
# COMMITTED) FOR SHARE waits for a transaction changing one of them (a deactivation, a
# failed validation, the GC's expiry) and then reads the changed row, not the statement's
# snapshot: a claim and a deactivation are never both granted. SQLite has one writer.
_ORDER_AUTHZS = (
    select(acme_authorizations.c.status, acme_authorizations.c.expires_at)
    .where(acme_authorizations.c.order_id == bindparam("b_id"))
    .with_for_update(read=True)
    .cte("order_authzs")
)
# The compare-and-set of a ready order (RFC 8555 §7.1.6, as domain.lifecycle derives it):
# stored pending, not expired, and every authorization valid and unexpired. The finalize
# checked all of this on an earlier read; CAA lookups and the CSR's checks came between.
BEGIN_PROCESSING = (
    update(acme_orders)
    .where(
        acme_orders.c.id == bindparam("b_id"),
        acme_orders.c.status == OrderStatus.PENDING.value,
        acme_orders.c.expires_at > _CLAIM_NOW,
        exists(select(_ORDER_AUTHZS.c.status)),
        ~exists(
            select(_ORDER_AUTHZS.c.status).where(
                or_(
                    _ORDER_AUTHZS.c.status != AuthzStatus.VALID.value,
                    _ORDER_AUTHZS.c.expires_at <= _CLAIM_NOW,
                )
            )
        ),
    )
    .values(
        status=OrderStatus.PROCESSING.value,
        reserved_serial=bindparam("b_serial"),
        updated_at=_CLAIM_NOW,
    )
)
FINISH_PROCESSING = (
    update(acme_orders)
    .where(
        acme_orders.c.id == bindparam("b_id"),
        acme_orders.c.status == OrderStatus.PROCESSING.value,
    )
    .values(
        status=bindparam("b_status"),
        certificate_id=bindparam("b_cert"),
        error=bindparam("b_error"),
        updated_at=bindparam("b_now"),
    )
)
# RETURNING, not rowcount: Python's sqlite3 reports no rowcount for a statement that
# starts with WITH, as this one does.
_BEGIN_PROCESSING = FastStatement(BEGIN_PROCESSING.returning(acme_orders.c.id))
_FINISH_PROCESSING = FastStatement(FINISH_PROCESSING)


def insert_authzs(conn: Connection, authzs: Sequence[Authorization], now: datetime) -> None:
    """Authorizations with their challenges (an order's, or pre-authorizations)."""
    for a in authzs:
        _INSERT_AUTHZ.rowcount(conn, authz_values(a, now))
        for c in a.challenges:
            _INSERT_CHALLENGE.rowcount(conn, challenge_values(c))


def insert_order(conn: Connection, order: Order, authzs: Sequence[Authorization]) -> None:
    _INSERT_ORDER.rowcount(conn, order_values(order))
    insert_authzs(conn, authzs, order.created_at)


def order_values(order: Order) -> dict[str, Any]:
    """A new order's row (the keys of ``ORDER_KEYS``)."""
    return {
        "id": order.id,
        "account_id": order.account_id,
        "profile_id": order.profile_id,
        "status": order.stored_status.value,
        "identifiers": _json.dumps([i.to_wire() for i in order.identifiers]),
        "not_before": order.not_before,
        "not_after": order.not_after,
        "expires_at": order.expires_at,
        "created_at": order.created_at,
        "updated_at": order.created_at,
        "replaces": order.replaces,
    }


def authz_values(a: Authorization, now: datetime) -> dict[str, Any]:
    """A new authorization's row (the keys of ``AUTHZ_KEYS``)."""
    return {
        "id": a.id,
        "order_id": a.order_id,
        "account_id": a.account_id,
        "identifier_type": a.identifier.type,
        "identifier_value": a.identifier.value,
        "status": a.status.value,
        "expires_at": a.expires_at,
        "created_at": now,
        "validated_at": a.validated_at,
    }


def challenge_values(c: Challenge) -> dict[str, Any]:
    """A new challenge's row (the keys of ``CHALLENGE_KEYS``)."""
    return {
        "id": c.id,
        "authz_id": c.authz_id,
        "type": c.type,
        "token": c.token,
        "status": c.status.value,
        "validated_at": c.validated_at,
        "error": c.error,
    }


def _order(row: Mapping[Any, Any], authz_ids: tuple[str, ...]) -> Order:
    return Order(
        id=row["id"],
        account_id=row["account_id"],
        profile_id=row["profile_id"],
        identifiers=tuple(
            Identifier(i["type"], i["value"]) for i in _json.loads(row["identifiers"])
        ),
        stored_status=OrderStatus(row["status"]),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        not_before=row["not_before"],
        not_after=row["not_after"],
        error=row["error"],
        certificate_id=row["certificate_id"],
        authz_ids=authz_ids,
        replaces=row["replaces"],
    )


def get_order(
    conn: Connection, order_id: str
) -> tuple[Order, list[tuple[AuthzStatus, datetime]]] | None:
    """The order with its authorizations' (status, expiry), by identifier (as its
    ``authz_ids``)."""
    return order_of(_GET_ORDER.all(conn, {"b_id": order_id}))


def order_of(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[Order, list[tuple[AuthzStatus, datetime]]] | None:
    """An order and its authorizations from the rows of ``ORDER_READ`` (none: no order)."""
    if not rows:
        return None
    authz_rows = [r for r in rows if r["authz_id"] is not None]
    order = _order(rows[0], tuple(r["authz_id"] for r in authz_rows))
    return order, [(AuthzStatus(r["authz_status"]), r["authz_expires_at"]) for r in authz_rows]


def list_order_ids(
    conn: Connection, account_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[tuple[str, datetime]]:
    """Keyset pagination over (created_at, id): stable while orders are added."""
    stmt = select(acme_orders.c.id, acme_orders.c.created_at).where(
        acme_orders.c.account_id == account_id, acme_orders.c.status != OrderStatus.INVALID.value
    )
    if after is not None:
        created, oid = after
        stmt = stmt.where(
            or_(
                acme_orders.c.created_at > created,
                and_(acme_orders.c.created_at == created, acme_orders.c.id > oid),
            )
        )
    rows = conn.execute(stmt.order_by(acme_orders.c.created_at, acme_orders.c.id).limit(limit))
    return [(r.id, r.created_at) for r in rows]


# The account's open orders (derived pending, ready or processing): parameters b_owner
# (the account) and b_now. An order whose authorization failed, was deactivated or
# expired is invalid already, stored status or not, so it is not open. (No IN lists: a
# FastStatement binds no expanding parameter.)
_NOW = bindparam("b_now", type_=acme_orders.c.expires_at.type)
_FAILED = exists().where(
    acme_authorizations.c.order_id == acme_orders.c.id,
    or_(
        and_(
            acme_authorizations.c.status != AuthzStatus.PENDING.value,
            acme_authorizations.c.status != AuthzStatus.VALID.value,
        ),
        acme_authorizations.c.expires_at <= _NOW,
    ),
)
OPEN_ORDERS_COLUMNS = (
    func.count().label("open"),
    func.min(acme_orders.c.expires_at).label("earliest"),
)
OPEN_ORDERS_WHERE = and_(
    acme_orders.c.account_id == bindparam("b_owner"),
    or_(
        acme_orders.c.status == OrderStatus.PENDING.value,
        acme_orders.c.status == OrderStatus.PROCESSING.value,
    ),
    acme_orders.c.expires_at > _NOW,
    ~_FAILED,
)
_OPEN_ORDERS = FastStatement(select(*OPEN_ORDERS_COLUMNS).where(OPEN_ORDERS_WHERE))
_LOCK_ACCOUNT = FastStatement(
    select(acme_accounts.c.id).where(acme_accounts.c.id == bindparam("b_owner")).with_for_update()
)


def open_orders(
    conn: Connection, account_id: str, now: datetime, *, lock: bool = False
) -> tuple[int, datetime | None]:
    """The account's open orders: their number and the earliest expiry among them.

    ``lock`` takes the account row first (PostgreSQL ``FOR UPDATE``; SQLite writers are
    serialised by ``BEGIN IMMEDIATE``), so a count and the insert after it in the same
    transaction cannot be raced by a concurrent new-order of the same account.
    """
    params = {"b_owner": account_id, "b_now": now}
    if lock:
        _LOCK_ACCOUNT.first(conn, params)
    row = _OPEN_ORDERS.first(conn, params)
    assert row is not None  # an aggregate without GROUP BY: always one row
    return open_orders_of(row)


def open_orders_of(row: Mapping[str, Any]) -> tuple[int, datetime | None]:
    """``open_orders``'s result from a row with ``OPEN_ORDERS_COLUMNS``."""
    earliest = row["earliest"]
    if earliest is not None and earliest.tzinfo is None:  # SQLite: min() loses the type
        earliest = earliest.replace(tzinfo=UTC)
    return int(row["open"]), earliest


def begin_processing(conn: Connection, order_id: str, serial: str, now: datetime) -> bool:
    """The finalize gate (Boulder's began_processing): exactly one caller wins."""
    params = {"b_id": order_id, "b_serial": serial, "b_now": now}
    return _BEGIN_PROCESSING.first(conn, params) is not None


def finish_processing(
    conn: Connection,
    order_id: str,
    *,
    new: OrderStatus,
    now: datetime,
    certificate_id: str | None = None,
    error: str | None = None,
) -> bool:
    params = {
        "b_id": order_id,
        "b_status": new.value,
        "b_cert": certificate_id,
        "b_error": error,
        "b_now": now,
    }
    return _FINISH_PROCESSING.rowcount(conn, params) == 1


def _challenge(row: Mapping[Any, Any], prefix: str = "") -> Challenge:
    """A challenge from ``row``, whose columns are named ``prefix`` and the column's name."""
    return Challenge(
        id=row[f"{prefix}id"],
        authz_id=row[f"{prefix}authz_id"],
        type=row[f"{prefix}type"],
        token=row[f"{prefix}token"],
        status=ChallengeStatus(row[f"{prefix}status"]),
        validated_at=row[f"{prefix}validated_at"],
        error=row[f"{prefix}error"],
    )


def get_authz(conn: Connection, authz_id: str) -> Authorization | None:
    """The authorization with its challenges (ordered by type)."""
    return authz_of(_GET_AUTHZ.all(conn, {"b_id": authz_id}))


def authz_of(rows: Sequence[Mapping[str, Any]]) -> Authorization | None:
    """An authorization from the rows of ``AUTHZ_READ`` (none: there is no such one)."""
    if not rows:
        return None
    m = rows[0]
    return Authorization(
        id=m["id"],
        order_id=m["order_id"],
        account_id=m["account_id"],
        identifier=Identifier(m["identifier_type"], m["identifier_value"]),
        status=AuthzStatus(m["status"]),
        expires_at=m["expires_at"],
        challenges=tuple(_challenge(r, "ch_") for r in rows if r["ch_id"] is not None),
        validated_at=m["validated_at"],
    )


def get_challenge(conn: Connection, challenge_id: str) -> Challenge | None:
    row = conn.execute(select(acme_challenges).where(acme_challenges.c.id == challenge_id)).first()
    return _challenge(row._mapping) if row else None


def begin_validation(conn: Connection, challenge_id: str, now: datetime) -> bool:
    """pending -> processing; of concurrent challenge POSTs exactly one starts validation."""
    result = conn.execute(
        update(acme_challenges)
        .where(
            acme_challenges.c.id == challenge_id,
            acme_challenges.c.status == ChallengeStatus.PENDING.value,
        )
        .values(status=ChallengeStatus.PROCESSING.value, processing_since=now)
    )
    return result.rowcount == 1


def claim_stale_validation(
    conn: Connection, challenge_id: str, older_than: datetime, now: datetime
) -> bool:
    """Take over a validation left processing (crash, killed replica); one claimant wins."""
    result = conn.execute(
        update(acme_challenges)
        .where(
            acme_challenges.c.id == challenge_id,
            acme_challenges.c.status == ChallengeStatus.PROCESSING.value,
            acme_challenges.c.processing_since < older_than,
        )
        .values(processing_since=now)
    )
    return result.rowcount == 1


def stale_validations(conn: Connection, older_than: datetime, limit: int = 100) -> list[str]:
    rows = conn.execute(
        select(acme_challenges.c.id)
        .where(
            acme_challenges.c.status == ChallengeStatus.PROCESSING.value,
            acme_challenges.c.processing_since < older_than,
        )
        .limit(limit)
    )
    return [r.id for r in rows]


def finish_validation(
    conn: Connection,
    challenge_id: str,
    *,
    valid: bool,
    now: datetime,
    error: str | None,
    record: str,
) -> bool:
    result = conn.execute(
        update(acme_challenges)
        .where(
            acme_challenges.c.id == challenge_id,
            acme_challenges.c.status == ChallengeStatus.PROCESSING.value,
        )
        .values(
            status=(ChallengeStatus.VALID if valid else ChallengeStatus.INVALID).value,
            validated_at=now if valid else None,
            error=error,
            validation_record=record,
        )
    )
    return result.rowcount == 1


def set_authz_status(
    conn: Connection,
    authz_id: str,
    expected: AuthzStatus,
    new: AuthzStatus,
    *,
    validated_at: datetime | None = None,
) -> bool:
    values: dict[str, object] = {"status": new.value}
    if validated_at is not None:
        values["validated_at"] = validated_at
    result = conn.execute(
        update(acme_authorizations)
        .where(
            acme_authorizations.c.id == authz_id,
            acme_authorizations.c.status == expected.value,
        )
        .values(**values)
    )
    return result.rowcount == 1


def reusable_authz(
    conn: Connection, account_id: str, identifier: Identifier, now: datetime
) -> Authorization | None:
    """A valid, unexpired authorization of this account for this identifier (never another
    account's, never an invalid one), the one that lives longest."""
    row = conn.execute(
        select(acme_authorizations.c.id)
        .where(
            acme_authorizations.c.account_id == account_id,
            acme_authorizations.c.identifier_type == identifier.type,
            acme_authorizations.c.identifier_value == identifier.value,
            acme_authorizations.c.status == AuthzStatus.VALID.value,
            acme_authorizations.c.expires_at > now,
        )
        .order_by(acme_authorizations.c.expires_at.desc())
        .limit(1)
    ).first()
    return get_authz(conn, row.id) if row else None


def deactivate_pending_authzs(conn: Connection, account_id: str) -> int:
    """RFC 8555 §7.3.6: a deactivated account's pending authorizations go with it."""
    result = conn.execute(
        update(acme_authorizations)
        .where(
            acme_authorizations.c.account_id == account_id,
            acme_authorizations.c.status == AuthzStatus.PENDING.value,
        )
        .values(status=AuthzStatus.DEACTIVATED.value)
    )
    return int(result.rowcount)
