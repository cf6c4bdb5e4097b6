"""ACME account rows. Status changes are compare-and-set on the prior status."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select, update

from certctl.domain.model import Account, AccountStatus
from certctl.storage import _json
from certctl.storage._fast import FastStatement
from certctl.storage.schema import acme_accounts


def _account(row: Mapping[Any, Any]) -> Account:
    return Account(
        id=row["id"],
        profile_id=row["profile_id"],
        status=AccountStatus(row["status"]),
        jwk_json=row["jwk_json"],
        thumbprint=row["jwk_thumbprint"],
        contact=tuple(_json.loads(row["contact"])),
        tos_agreed=row["tos_agreed"],
        created_at=row["created_at"],
        eab_kid=row["eab_kid"],
    )


# Hot-path statements are built once: building a Core statement per call (and its cache
# key) costs several times what executing it does.
_GET = FastStatement(select(acme_accounts).where(acme_accounts.c.id == bindparam("b_id")))
_KEY_IN_USE = FastStatement(
    select(exists().where(acme_accounts.c.key_spki_sha256 == bindparam("b_spki")).label("used"))
)


def insert(conn: Connection, account: Account, *, spki_sha256: str) -> None:
    conn.execute(
        acme_accounts.insert().values(
            id=account.id,
            profile_id=account.profile_id,
            status=account.status.value,
            jwk_json=account.jwk_json,
            jwk_thumbprint=account.thumbprint,
            key_spki_sha256=spki_sha256,
            contact=_json.dumps(list(account.contact)),
            tos_agreed=account.tos_agreed,
            eab_kid=account.eab_kid,
            created_at=account.created_at,
            updated_at=account.created_at,
        )
    )


def get(conn: Connection, account_id: str) -> Account | None:
    row = _GET.first(conn, {"b_id": account_id})
    return _account(row) if row else None


def get_by_thumbprint(conn: Connection, profile_id: str, thumbprint: str) -> Account | None:
    row = conn.execute(
        select(acme_accounts).where(
            acme_accounts.c.profile_id == profile_id,
            acme_accounts.c.jwk_thumbprint == thumbprint,
        )
    ).first()
    return _account(row._mapping) if row else None


def key_in_use(conn: Connection, spki_sha256: str) -> bool:
    """Is this public key any account's key, on any profile (RFC 8555 §11.1)?"""
    row = _KEY_IN_USE.first(conn, {"b_spki": spki_sha256})
    return bool(row and row["used"])


def set_contact(conn: Connection, account_id: str, contact: tuple[str, ...], now: datetime) -> bool:
    result = conn.execute(
        update(acme_accounts)
        .where(acme_accounts.c.id == account_id, acme_accounts.c.status == AccountStatus.VALID)
        .values(contact=_json.dumps(list(contact)), updated_at=now)
    )
    return result.rowcount == 1


def set_status(
    conn: Connection, account_id: str, expected: AccountStatus, new: AccountStatus, now: datetime
) -> bool:
    result = conn.execute(
        update(acme_accounts)
        .where(acme_accounts.c.id == account_id, acme_accounts.c.status == expected.value)
        .values(status=new.value, updated_at=now)
    )
    return result.rowcount == 1


def swap_key(
    conn: Connection,
    account_id: str,
    *,
    old_thumbprint: str,
    jwk_json: str,
    thumbprint: str,
    spki_sha256: str,
    now: datetime,
) -> bool:
    """Key rollover as compare-and-set on the old key (RFC 8555 §7.3.5)."""
    result = conn.execute(
        update(acme_accounts)
        .where(
            acme_accounts.c.id == account_id,
            acme_accounts.c.jwk_thumbprint == old_thumbprint,
            acme_accounts.c.status == AccountStatus.VALID.value,
        )
        .values(
            jwk_json=jwk_json,
            jwk_thumbprint=thumbprint,
            key_spki_sha256=spki_sha256,
            updated_at=now,
        )
    )
    return result.rowcount == 1
