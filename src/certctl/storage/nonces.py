"""Single use of nonces across workers, replicas and restarts (RFC 8555 §6.5).

Nonces themselves are stateless (MAC-signed, see certctl.acme.nonce); using one inserts it
here. The primary key decides races: of N concurrent uses exactly one insert lands.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.domain.model import AccountStatus
from certctl.storage._fast import FastStatement
from certctl.storage.schema import acme_accounts, used_nonces

# Built once per dialect (every POST runs this); the values come as parameters.
# RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
_CONSUME = {
    name: FastStatement(
        insert(used_nonces)
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(used_nonces.c.nonce),
        keys=("nonce", "expires_at"),
    )
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


# The nonce is recorded only if the account row still holds the key the request was
# verified with, is valid and belongs to the profile: the confirmation and the spending
# are one statement, so one round trip and atomic without a transaction around it.
_ACCOUNT_MATCHES = (
    select(
        bindparam("nonce", type_=used_nonces.c.nonce.type),
        bindparam("expires_at", type_=used_nonces.c.expires_at.type),
    )
    .select_from(acme_accounts)
    .where(
        acme_accounts.c.id == bindparam("b_account"),
        acme_accounts.c.profile_id == bindparam("b_profile"),
        acme_accounts.c.status == AccountStatus.VALID.value,
        acme_accounts.c.jwk_json == bindparam("b_jwk"),
    )
)
_CONSUME_FOR_ACCOUNT = {
    name: FastStatement(
        insert(used_nonces)
        .from_select(["nonce", "expires_at"], _ACCOUNT_MATCHES)
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(used_nonces.c.nonce)
    )
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def consume_for_account(
    conn: Connection,
    nonce: str,
    expires_at: datetime,
    *,
    account_id: str,
    profile_id: str,
    jwk_json: str,
) -> bool:
    """Record the use of ``nonce`` if the account is still valid, of ``profile_id`` and
    keyed with ``jwk_json``. False when it is not, or when the nonce was used before: the
    caller tells the two apart on its slow path (which reads the row)."""
    stmt = _CONSUME_FOR_ACCOUNT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    params = {
        "nonce": nonce,
        "expires_at": expires_at,
        "b_account": account_id,
        "b_profile": profile_id,
        "b_jwk": jwk_json,
    }
    return stmt.first(conn, params) is not None


def consume(conn: Connection, nonce: str, expires_at: datetime) -> bool:
    """Record the use of ``nonce``; False when it had already been used."""
    stmt = _CONSUME["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return stmt.first(conn, {"nonce": nonce, "expires_at": expires_at}) is not None


def purge_expired(conn: Connection, now: datetime) -> int:
    """Expired nonces fail the codec's expiry check anyway, so their rows can go."""
    return conn.execute(delete(used_nonces).where(used_nonces.c.expires_at < now)).rowcount
