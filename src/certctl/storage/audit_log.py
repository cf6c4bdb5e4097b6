"""Audit rows, written on the caller's connection so they commit with the change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from certctl.domain import entropy
from certctl.storage import _json
from certctl.storage._fast import FastStatement
from certctl.storage.schema import audit_events

# Built once: most ACME writes add an audit row.
KEYS = ("id", "at", "actor", "action", "object_type", "object_id", "details")
_INSERT = FastStatement(audit_events.insert(), keys=KEYS)


def record(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    _INSERT.rowcount(
        conn,
        event(
            at=at,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details,
        ),
    )


def record_many(conn: Connection, events: Sequence[Mapping[str, Any]]) -> None:
    """Several rows from ``event`` in one driver call (one round trip on PostgreSQL)."""
    _INSERT.execute_many(conn, events)


def event(
    *,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit row's values, for ``record_many``."""
    return {
        "id": "evt-" + entropy.token_hex(16),
        "at": at,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": _json.dumps(details or {}),
    }


def list_for(conn: Connection, object_type: str, object_id: str) -> Sequence[dict[str, Any]]:
    rows = conn.execute(
        select(audit_events)
        .where(audit_events.c.object_type == object_type, audit_events.c.object_id == object_id)
        .order_by(audit_events.c.at)
    )
    return [dict(r._mapping) for r in rows]
