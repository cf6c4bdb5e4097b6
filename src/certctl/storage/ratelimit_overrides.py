"""Rate-limit overrides: one value per (scope, subject, limit), scope ``account|profile``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from certctl.storage.schema import ratelimit_overrides as table


@dataclass(frozen=True)
class Override:
    scope: str
    subject_id: str
    limit_name: str
    value: int
    updated_at: datetime


def list_all(conn: Connection) -> list[Override]:
    rows = conn.execute(
        select(table).order_by(table.c.scope, table.c.subject_id, table.c.limit_name)
    )
    return [Override(r.scope, r.subject_id, r.limit_name, r.value, r.updated_at) for r in rows]


def get(conn: Connection, scope: str, subject_id: str, limit_name: str) -> int | None:
    value: int | None = conn.execute(
        select(table.c.value).where(
            table.c.scope == scope,
            table.c.subject_id == subject_id,
            table.c.limit_name == limit_name,
        )
    ).scalar_one_or_none()
    return value


def put(
    conn: Connection, scope: str, subject_id: str, limit_name: str, value: int, now: datetime
) -> None:
    """Insert or replace; the primary key keeps one row per triple."""
    changed = conn.execute(
        update(table)
        .where(
            table.c.scope == scope,
            table.c.subject_id == subject_id,
            table.c.limit_name == limit_name,
        )
        .values(value=value, updated_at=now)
    ).rowcount
    if changed == 0:
        conn.execute(
            table.insert().values(
                scope=scope,
                subject_id=subject_id,
                limit_name=limit_name,
                value=value,
                created_at=now,
                updated_at=now,
            )
        )


def remove(conn: Connection, scope: str, subject_id: str, limit_name: str) -> bool:
    result = conn.execute(
        delete(table).where(
            table.c.scope == scope,
            table.c.subject_id == subject_id,
            table.c.limit_name == limit_name,
        )
    )
    return result.rowcount == 1
