"""Sweeps of expired ACME state (the GC loop). Each returns the ids it changed, so the
caller can audit every object. Certificates and revocations are never touched here: CRLs
need revoked entries until after expiry (the Vault HCSEC-2021-09 lesson)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, and_, delete, select, text, tuple_, update

from certctl.domain.model import AuthzStatus, OrderStatus
from certctl.storage.schema import (
    acme_authorizations,
    acme_orders,
    certificate_versions,
    used_nonces,
)

# Any constant, the same in every replica.
_GC_LOCK = 0x6763  # "gc"


@contextmanager
def fleet_lock(conn: Connection) -> Iterator[bool]:
    """In a fleet one replica sweeps at a time: a transaction-scoped advisory lock on
    PostgreSQL (False when another replica holds it). SQLite has one writer anyway."""
    if conn.dialect.name != "postgresql":
        yield True
        return
    got = conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _GC_LOCK}).scalar()
    yield bool(got)


def purge_nonces(conn: Connection, now: datetime, limit: int) -> int:
    """Delete at most ``limit`` expired nonces, the oldest first. They are a prefix of the
    table's key (expires_at, nonce), so the delete is a range of the key ending at the
    ``limit``-th of them: found with one index probe and removed with one range scan on
    both backends (an ``IN`` of the selected keys was a full scan on PostgreSQL)."""
    if limit <= 0:
        return 0
    key = tuple_(used_nonces.c.expires_at, used_nonces.c.nonce)
    expired = used_nonces.c.expires_at < now
    last = conn.execute(
        select(used_nonces.c.expires_at, used_nonces.c.nonce)
        .where(expired)
        .order_by(used_nonces.c.expires_at, used_nonces.c.nonce)
        .offset(limit - 1)
        .limit(1)
    ).first()
    if last is None:
        return int(conn.execute(delete(used_nonces).where(expired)).rowcount)
    # ``last`` has expired, so every key up to it has. The plain bound on expires_at is
    # what SQLite's planner ends its range scan with (it does not with the row value); a
    # plain tuple on the right takes the key's column types (UTCDateTime's binding).
    where = and_(
        used_nonces.c.expires_at <= last.expires_at,
        key <= (last.expires_at, last.nonce),
    )
    return int(conn.execute(delete(used_nonces).where(where)).rowcount)


def expire_authzs(conn: Connection, now: datetime, limit: int) -> list[str]:
    """pending or valid authorizations past their expiry -> expired (RFC 8555 §7.1.6)."""
    ids = [
        r.id
        for r in conn.execute(
            select(acme_authorizations.c.id)
            .where(
                acme_authorizations.c.status.in_(
                    [AuthzStatus.PENDING.value, AuthzStatus.VALID.value]
                ),
                acme_authorizations.c.expires_at < now,
            )
            .limit(limit)
        )
    ]
    if not ids:
        return []
    # Only the rows this call changed: a concurrent sweep of another replica may have
    # expired some of them first (its audit event is the one that counts).
    changed = conn.execute(
        update(acme_authorizations)
        .where(
            acme_authorizations.c.id.in_(ids),
            acme_authorizations.c.status.in_([AuthzStatus.PENDING.value, AuthzStatus.VALID.value]),
        )
        .values(status=AuthzStatus.EXPIRED.value)
        .returning(acme_authorizations.c.id)
    )
    return [r.id for r in changed]


def invalidate_orders(conn: Connection, now: datetime, error: str, limit: int) -> list[str]:
    """Open orders past their expiry -> invalid (their derived status already says so)."""
    ids = [
        r.id
        for r in conn.execute(
            select(acme_orders.c.id)
            .where(
                acme_orders.c.status == OrderStatus.PENDING.value,
                acme_orders.c.expires_at < now,
            )
            .limit(limit)
        )
    ]
    if not ids:
        return []
    changed = conn.execute(  # only the rows this call changed, as in expire_authzs
        update(acme_orders)
        .where(acme_orders.c.id.in_(ids), acme_orders.c.status == OrderStatus.PENDING.value)
        .values(status=OrderStatus.INVALID.value, error=error, updated_at=now)
        .returning(acme_orders.c.id)
    )
    return [r.id for r in changed]


def stuck_processing(
    conn: Connection, older_than: datetime, limit: int
) -> list[tuple[str, str | None]]:
    """Orders left processing by a crash: (order id, id of its recorded certificate or
    None). The serial is reserved before signing and the certificate recorded with the
    order id, so this tells which finalizations completed."""
    rows = conn.execute(
        select(acme_orders.c.id, certificate_versions.c.id.label("cert_id"))
        .select_from(
            acme_orders.outerjoin(
                certificate_versions,
                and_(certificate_versions.c.acme_order_id == acme_orders.c.id),
            )
        )
        .where(
            acme_orders.c.status == OrderStatus.PROCESSING.value,
            acme_orders.c.updated_at < older_than,
        )
        .limit(limit)
    )
    return [(r.id, r.cert_id) for r in rows]
