"""Single use of nonces across workers, replicas and restarts (RFC 8555 §6.5).

Nonces themselves are stateless (MAC-signed, see certctl.acme.nonce); using one inserts it
here. The primary key decides races: of N concurrent uses exactly one insert lands.

``lazy``: a spend that is the only write of its transaction, whose loss in a crash
changes no answer (``Database.write(promised=False)``; see certctl.ra.replay). On
PostgreSQL such a statement turns ``synchronous_commit`` off for its own transaction
(``set_config(..., true)``, which ends with the transaction): the commit returns
without waiting for its WAL to be flushed, which the WAL writer does within
``wal_writer_delay`` (0.2 s by default, three times that at worst). A promised
transaction never uses a lazy statement, so its commit still waits for the disk, and
carries every lazy commit before it. On SQLite group commit does the same
(``certctl.storage.durable``), so ``lazy`` changes nothing there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Connection, Select, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.domain.model import AccountStatus
from certctl.storage._fast import FastStatement
from certctl.storage.schema import acme_accounts, used_nonces

# PostgreSQL: true, and the commit of the statement's transaction does not wait for its
# WAL to reach the disk (see ``lazy`` above).
_LAZY_COMMIT = func.set_config("synchronous_commit", "off", True).isnot(None)

_VALUES = select(
    bindparam("nonce", type_=used_nonces.c.nonce.type),
    bindparam("expires_at", type_=used_nonces.c.expires_at.type),
)

# The nonce is recorded only if the account row still holds the key the request was
# verified with, is valid and belongs to the profile: the confirmation and the spending
# are one statement, so one round trip and atomic without a transaction around it.
_ACCOUNT_MATCHES = _VALUES.select_from(acme_accounts).where(
    acme_accounts.c.id == bindparam("b_account"),
    acme_accounts.c.profile_id == bindparam("b_profile"),
    acme_accounts.c.status == AccountStatus.VALID.value,
    acme_accounts.c.jwk_json == bindparam("b_jwk"),
)


def _spend(insert: Any, source: Select[Any]) -> Any:
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return (
        insert(used_nonces)
        .from_select(["nonce", "expires_at"], source)
        .on_conflict_do_nothing(index_elements=["expires_at", "nonce"])
        .returning(used_nonces.c.nonce)
    )


def _by_dialect(source: Select[Any]) -> dict[tuple[str, bool], FastStatement]:
    """Built once (every POST runs one): SQLite's, PostgreSQL's, and PostgreSQL's lazy."""
    return {
        ("sqlite", False): FastStatement(_spend(sqlite_insert, source)),
        ("postgresql", False): FastStatement(_spend(pg_insert, source)),
        ("postgresql", True): FastStatement(_spend(pg_insert, source.where(_LAZY_COMMIT))),
    }


_CONSUME = _by_dialect(_VALUES)
_CONSUME_FOR_ACCOUNT = _by_dialect(_ACCOUNT_MATCHES)


def _pick(
    statements: dict[tuple[str, bool], FastStatement], conn: Connection, lazy: bool
) -> FastStatement:
    if conn.dialect.name == "postgresql":
        return statements["postgresql", lazy]
    return statements["sqlite", False]


def account_spend_cte(name: str, *, lazy: bool = False) -> CTE:
    """PostgreSQL: ``consume_for_account`` as a CTE of a larger statement (storage._chain),
    returning one row when the nonce was spent; its parameters from ``account_spend``.
    ``lazy``: see the module docstring (for the whole statement)."""
    source = _ACCOUNT_MATCHES.where(_LAZY_COMMIT) if lazy else _ACCOUNT_MATCHES
    return _spend(pg_insert, source).cte(name)  # type: ignore[no-any-return]


def account_spend(
    nonce: str, expires_at: datetime, *, account_id: str, profile_id: str, jwk_json: str
) -> dict[str, Any]:
    """The parameters of ``consume_for_account`` and ``account_spend_cte``."""
    return {
        "nonce": nonce,
        "expires_at": expires_at,
        "b_account": account_id,
        "b_profile": profile_id,
        "b_jwk": jwk_json,
    }


def consume_for_account(
    conn: Connection,
    nonce: str,
    expires_at: datetime,
    *,
    account_id: str,
    profile_id: str,
    jwk_json: str,
    lazy: bool = False,
) -> bool:
    """Record the use of ``nonce`` if the account is still valid, of ``profile_id`` and
    keyed with ``jwk_json``. False when it is not, or when the nonce was used before: the
    caller tells the two apart on its slow path (which reads the row). ``lazy``: see the
    module docstring."""
    params = account_spend(
        nonce, expires_at, account_id=account_id, profile_id=profile_id, jwk_json=jwk_json
    )
    return _pick(_CONSUME_FOR_ACCOUNT, conn, lazy).first(conn, params) is not None


def consume(conn: Connection, nonce: str, expires_at: datetime, *, lazy: bool = False) -> bool:
    """Record the use of ``nonce``; False when it had already been used. ``lazy``: see
    the module docstring."""
    params = {"nonce": nonce, "expires_at": expires_at}
    return _pick(_CONSUME, conn, lazy).first(conn, params) is not None


def purge_expired(conn: Connection, now: datetime) -> int:
    """Expired nonces fail the codec's expiry check anyway, so their rows can go."""
    return conn.execute(delete(used_nonces).where(used_nonces.c.expires_at < now)).rowcount
