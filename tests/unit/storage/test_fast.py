"""FastStatement (certctl.storage._fast) is Connection.execute without the machinery: the
same SQL, the same values in and out, the same exceptions, and on PostgreSQL the same
recovery from a lost connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from certctl.storage._fast import FastStatement
from certctl.storage.db import Database
from certctl.storage.schema import audit_events, used_nonces

NOW = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
EVENT_KEYS = ("id", "at", "actor", "action", "object_type", "object_id", "details")
INSERT_EVENT = FastStatement(audit_events.insert(), keys=EVENT_KEYS)
GET_EVENT = FastStatement(select(audit_events).where(audit_events.c.id == bindparam("b_id")))
EVENTS_SINCE = FastStatement(
    select(audit_events.c.id, audit_events.c.at)
    .where(audit_events.c.at >= bindparam("b_at"), audit_events.c.actor == "fast")
    .order_by(audit_events.c.at)
)
RENAME = FastStatement(
    update(audit_events)
    .where(audit_events.c.actor == bindparam("b_actor"))
    .values(action=bindparam("b_action"))
)


def _event(event_id: str, at: datetime = NOW) -> dict[str, object]:
    return {
        "id": event_id,
        "at": at,
        "actor": "fast",
        "action": "tested",
        "object_type": "t",
        "object_id": "o",
        "details": "{}",
    }


def test_rows_read_back_as_connection_execute_reads_them(db: Database) -> None:
    with db.write() as conn:
        assert INSERT_EVENT.rowcount(conn, _event("evt-1")) == 1
        conn.execute(insert(audit_events), _event("evt-2", NOW + timedelta(seconds=1)))
    with db.read() as conn:
        for event_id in ("evt-1", "evt-2"):
            fast = GET_EVENT.first(conn, {"b_id": event_id})
            ordinary = conn.execute(
                select(audit_events).where(audit_events.c.id == event_id)
            ).first()
            assert ordinary is not None
            assert fast == dict(ordinary._mapping)
        got = GET_EVENT.first(conn, {"b_id": "evt-1"})
        assert got is not None
        assert got["at"] == NOW and got["at"].tzinfo is UTC  # aware UTC, microseconds kept
        assert GET_EVENT.first(conn, {"b_id": "missing"}) is None
        rows = EVENTS_SINCE.all(conn, {"b_at": NOW})
        assert [r["id"] for r in rows] == ["evt-1", "evt-2"]


def test_rowcount_counts_changed_rows(db: Database) -> None:
    with db.write() as conn:
        INSERT_EVENT.rowcount(conn, _event("evt-1"))
        INSERT_EVENT.rowcount(conn, _event("evt-2"))
        assert RENAME.rowcount(conn, {"b_actor": "fast", "b_action": "renamed"}) == 2
        assert RENAME.rowcount(conn, {"b_actor": "nobody", "b_action": "renamed"}) == 0


def test_a_duplicate_key_is_sqlalchemys_integrity_error_and_rolls_back(db: Database) -> None:
    with db.write() as conn:
        INSERT_EVENT.rowcount(conn, _event("evt-1"))
    with pytest.raises(IntegrityError), db.write() as conn:
        INSERT_EVENT.rowcount(conn, _event("evt-2"))
        INSERT_EVENT.rowcount(conn, _event("evt-1"))
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 1
        # The connection this thread kept goes on working: SQLAlchemy closed the cursor
        # of the failed statement, which PostgreSQL's connection must not keep.
        assert GET_EVENT.first(conn, {"b_id": "evt-1"}) is not None


def test_a_value_the_type_refuses_is_a_statement_error(db: Database) -> None:
    with pytest.raises(StatementError) as info, db.write() as conn:
        INSERT_EVENT.rowcount(conn, _event("evt-1", datetime(2030, 1, 1)))  # naive
    assert isinstance(info.value.orig, ValueError)


def test_a_missing_value_is_refused_before_the_driver(db: Database) -> None:
    spend = FastStatement(insert(used_nonces), keys=("nonce", "expires_at"))
    with pytest.raises(StatementError, match="expires_at"), db.write() as conn:
        spend.rowcount(conn, {"nonce": "n"})


@pytest.mark.postgres
def test_a_lost_postgresql_connection_invalidates_and_the_next_one_works(
    postgres_url: str,
) -> None:
    database = Database(postgres_url, pool_size=1)
    database.migrate()
    try:
        with database.read() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = Database(postgres_url)
        try:
            with admin.read() as other:
                assert other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        finally:
            admin.dispose()
        with pytest.raises(DBAPIError) as info, database.read() as conn:
            GET_EVENT.first(conn, {"b_id": "evt-1"})
        assert info.value.connection_invalidated
        with database.read() as conn:  # a new connection, no manual step
            assert GET_EVENT.first(conn, {"b_id": "evt-1"}) is None
    finally:
        database.dispose()


def test_postgresql_keeps_one_cursor_per_connection_sqlite_one_per_statement(
    db: Database,
) -> None:
    seen: list[object] = []

    def record(_conn: object, cursor: object, *_args: object) -> None:
        seen.append(cursor)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.write() as conn:
            for n in range(3):
                INSERT_EVENT.rowcount(conn, _event(f"evt-{n}"))
            GET_EVENT.first(conn, {"b_id": "evt-1"})
            EVENTS_SINCE.all(conn, {"b_at": NOW})
        with db.read() as conn:  # the pool's one connection again (or another)
            rows = EVENTS_SINCE.all(conn, {"b_at": NOW})
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert [r["id"] for r in rows] == ["evt-0", "evt-1", "evt-2"]
    distinct = len({id(cursor) for cursor in seen[:5]})
    assert distinct == (5 if db.is_sqlite else 1)
