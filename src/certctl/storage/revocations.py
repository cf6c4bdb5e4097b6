"""Revocation records, the revocation feed, blocked keys and CRL state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.storage._fast import FastStatement
from certctl.storage.schema import (
    acme_accounts,
    blocked_keys,
    certificate_revocations,
    certificate_versions,
    crl_state,
    managed_certificates,
)


@dataclass(frozen=True)
class Revocation:
    seq: int
    serial: str
    issuer_id: str
    revoked_at: datetime
    reason: int


def mark_revoked(conn: Connection, serial: str, *, reason: int, now: datetime, actor: str) -> bool:
    """active -> revoked, compare-and-set: of two concurrent revocations one wins, the
    other sees alreadyRevoked. Writes the feed row in the same transaction."""
    row = conn.execute(
        update(certificate_versions)
        .where(certificate_versions.c.serial == serial, certificate_versions.c.status == "active")
        .values(status="revoked", revoked_at=now, revocation_reason=reason)
        .returning(certificate_versions.c.issuer_id, certificate_versions.c.certificate_id)
    ).first()
    if row is None:
        return False
    conn.execute(
        certificate_revocations.insert().values(
            serial=serial, issuer_id=row.issuer_id, revoked_at=now, reason=reason, actor=actor
        )
    )
    conn.execute(
        update(managed_certificates)
        .where(managed_certificates.c.id == row.certificate_id)
        .values(status="revoked", updated_at=now)
    )
    return True


def feed_since(conn: Connection, seq: int, limit: int = 1000) -> list[Revocation]:
    rows = conn.execute(
        select(certificate_revocations)
        .where(certificate_revocations.c.seq > seq)
        .order_by(certificate_revocations.c.seq)
        .limit(limit)
    )
    return [Revocation(r.seq, r.serial, r.issuer_id, r.revoked_at, r.reason) for r in rows]


def latest_seq(conn: Connection) -> int:
    value = conn.execute(
        select(certificate_revocations.c.seq)
        .order_by(certificate_revocations.c.seq.desc())
        .limit(1)
    ).scalar()
    return int(value or 0)


def revoked_entries(
    conn: Connection, issuer_id: str, expired_before: datetime
) -> list[tuple[str, datetime, int]]:
    """(serial, revoked_at, reason) for a CRL: kept until after the certificate expires."""
    rows = conn.execute(
        select(
            certificate_versions.c.serial,
            certificate_versions.c.revoked_at,
            certificate_versions.c.revocation_reason,
        ).where(
            certificate_versions.c.issuer_id == issuer_id,
            certificate_versions.c.status == "revoked",
            certificate_versions.c.not_after > expired_before,
        )
    )
    return [(r.serial, r.revoked_at, r.revocation_reason) for r in rows]


def block_key(conn: Connection, spki_sha256: str, *, serial: str, now: datetime) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(blocked_keys)
        .values(
            spki_sha256=spki_sha256, reason="keyCompromise", source_serial=serial, created_at=now
        )
        .on_conflict_do_nothing(index_elements=["spki_sha256"])
    )


_KEY_BLOCKED = FastStatement(
    select(exists().where(blocked_keys.c.spki_sha256 == bindparam("b_spki")).label("blocked"))
)


# Both refusals of a certificate key at finalize (parameter b_spki), as columns: in one
# round trip by themselves, or with the order's read (storage.issuance).
KEY_REFUSALS = (
    exists().where(blocked_keys.c.spki_sha256 == bindparam("b_spki")).label("blocked"),
    exists().where(acme_accounts.c.key_spki_sha256 == bindparam("b_spki")).label("account_key"),
)
_KEY_REFUSALS = FastStatement(select(*KEY_REFUSALS))


def key_refusals(conn: Connection, spki_sha256: str) -> tuple[bool, bool]:
    """(blocked for keyCompromise, an ACME account's key) for a key's SPKI digest."""
    row = _KEY_REFUSALS.first(conn, {"b_spki": spki_sha256})
    assert row is not None  # a SELECT of two EXISTS always has its row
    return bool(row["blocked"]), bool(row["account_key"])


def key_blocked(conn: Connection, spki_sha256: str) -> bool:
    """Checked at every finalize: the statement is built once."""
    row = _KEY_BLOCKED.first(conn, {"b_spki": spki_sha256})
    return bool(row and row["blocked"])


@dataclass(frozen=True)
class CrlState:
    issuer_id: str
    crl_number: int
    this_update: datetime
    next_update: datetime
    der: bytes


def get_crl(conn: Connection, issuer_id: str) -> CrlState | None:
    row = conn.execute(select(crl_state).where(crl_state.c.issuer_id == issuer_id)).first()
    if row is None:
        return None
    return CrlState(row.issuer_id, row.crl_number, row.this_update, row.next_update, bytes(row.der))


def crl_number(conn: Connection, issuer_id: str) -> int | None:
    """The stored CRL's number without its DER: enough to tell whether a copy is current."""
    value = conn.execute(
        select(crl_state.c.crl_number).where(crl_state.c.issuer_id == issuer_id)
    ).scalar()
    return None if value is None else int(value)


def next_crl_number(conn: Connection, issuer_id: str) -> int:
    """The number for the CRL being built; call inside the transaction that stores it, under
    a row lock (PostgreSQL) or the database lock (SQLite), so numbers strictly increase."""
    stmt = select(crl_state.c.crl_number).where(crl_state.c.issuer_id == issuer_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    current = conn.execute(stmt).scalar()
    return int(current or 0) + 1


def store_crl(conn: Connection, state: CrlState) -> bool:
    """Store unless a CRL with this number or a higher one is already there (a concurrent
    generator won): numbers never repeat and never go back (RFC 5280 §5.2.3)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values = {
        "crl_number": state.crl_number,
        "this_update": state.this_update,
        "next_update": state.next_update,
        "der": state.der,
    }
    stmt = insert(crl_state).values(issuer_id=state.issuer_id, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=["issuer_id"],
        set_=values,
        where=crl_state.c.crl_number < stmt.excluded.crl_number,
    ).returning(crl_state.c.crl_number)
    return conn.execute(upsert).first() is not None
