"""Server-wide secrets shared by every replica (for instance the nonce MAC key)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.storage.schema import server_secrets


def get_or_create(
    conn: Connection, name: str, factory: Callable[[], bytes], now: datetime
) -> bytes:
    """First writer wins; every replica then reads the same value."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(server_secrets)
        .values(name=name, value=factory(), created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = conn.execute(select(server_secrets.c.value).where(server_secrets.c.name == name))
    return bytes(value.scalar_one())
