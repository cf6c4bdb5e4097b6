"""Single use of nonces across workers, replicas and restarts (RFC 8555 §6.5).

Nonces themselves are stateless (HMAC, see certctl.acme.nonce); using one inserts it
here. The primary key decides races: of N concurrent uses exactly one insert lands.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.storage.schema import used_nonces

# Built once per dialect (every POST runs this); the values come as parameters.
# RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
_CONSUME = {
    name: insert(used_nonces)
    .on_conflict_do_nothing(index_elements=["nonce"])
    .returning(used_nonces.c.nonce)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def consume(conn: Connection, nonce: str, expires_at: datetime) -> bool:
    """Record the use of ``nonce``; False when it had already been used."""
    stmt = _CONSUME["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return conn.execute(stmt, {"nonce": nonce, "expires_at": expires_at}).first() is not None


def purge_expired(conn: Connection, now: datetime) -> int:
    """Expired nonces fail the HMAC expiry check anyway, so their rows can go."""
    return conn.execute(delete(used_nonces).where(used_nonces.c.expires_at < now)).rowcount
