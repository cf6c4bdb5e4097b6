"""External account binding keys (RFC 8555 §7.3.4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, or_, select, update

from certctl.storage import _json
from certctl.storage.schema import eab_keys


@dataclass(frozen=True)
class EabKey:
    kid: str
    hmac_key: bytes
    profile_ids: tuple[str, ...]
    reusable: bool
    uses: int
    revoked: bool
    allowed_names: tuple[str, ...]
    description: str
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None


def _key(row: RowMapping) -> EabKey:
    return EabKey(
        kid=row["kid"],
        hmac_key=bytes(row["hmac_key"]),
        profile_ids=tuple(_json.loads(row["profile_ids"])),
        reusable=row["reusable"],
        uses=row["uses"],
        revoked=row["revoked"],
        allowed_names=tuple(_json.loads(row["allowed_names"])),
        description=row["description"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def insert(conn: Connection, key: EabKey) -> None:
    conn.execute(
        eab_keys.insert().values(
            kid=key.kid,
            hmac_key=key.hmac_key,
            profile_ids=_json.dumps(list(key.profile_ids)),
            reusable=key.reusable,
            uses=0,
            revoked=False,
            allowed_names=_json.dumps(list(key.allowed_names)),
            description=key.description,
            expires_at=key.expires_at,
            created_at=key.created_at,
        )
    )


def get(conn: Connection, kid: str) -> EabKey | None:
    row = conn.execute(select(eab_keys).where(eab_keys.c.kid == kid)).first()
    return _key(row._mapping) if row else None


def list_keys(conn: Connection) -> list[EabKey]:
    return [
        _key(r._mapping) for r in conn.execute(select(eab_keys).order_by(eab_keys.c.created_at))
    ]


def consume(conn: Connection, kid: str, now: datetime) -> bool:
    """Count one use; compare-and-set so a single-use key binds exactly one account even
    when two registrations race."""
    result = conn.execute(
        update(eab_keys)
        .where(
            eab_keys.c.kid == kid,
            eab_keys.c.revoked.is_(False),
            or_(eab_keys.c.reusable.is_(True), eab_keys.c.uses == 0),
            or_(eab_keys.c.expires_at.is_(None), eab_keys.c.expires_at > now),
        )
        .values(uses=eab_keys.c.uses + 1, last_used_at=now)
    )
    return result.rowcount == 1


def revoke(conn: Connection, kid: str) -> bool:
    result = conn.execute(update(eab_keys).where(eab_keys.c.kid == kid).values(revoked=True))
    return result.rowcount == 1
