"""Database.read(), write() and statement(): what each promises, on SQLite and PostgreSQL.

On PostgreSQL reads and single statements run in autocommit on connections of the shared
pool; a connection must come back from them transactional, or a later write() would
commit statement by statement and could not roll back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from certctl.storage.db import Database


@pytest.fixture
def one_connection(store_url: str) -> Iterator[Database]:
    """A pool of one connection, so every block below gets the same one."""
    database = Database(store_url, pool_size=1)
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (x integer PRIMARY KEY)"))
    try:
        yield database
    finally:
        database.dispose()


def _rows(db: Database) -> list[int]:
    with db.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT x FROM t ORDER BY x"))]


def _autocommit(db: Database, kind: str) -> bool:
    with getattr(db, kind)() as conn:
        driver = conn.connection.driver_connection
        return bool(getattr(driver, "autocommit", False))


def test_a_write_after_reads_and_statements_still_rolls_back(one_connection: Database) -> None:
    db = one_connection
    _rows(db)
    with db.statement() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("the caller fails after its first statement")
    assert _rows(db) == [1]


def test_reads_and_statements_skip_begin_and_commit_on_postgresql(
    one_connection: Database,
) -> None:
    db = one_connection
    postgres = not db.is_sqlite
    assert _autocommit(db, "read") is postgres
    assert _autocommit(db, "statement") is postgres
    assert _autocommit(db, "write") is False
    # Pinned, whatever the server's default (every statement its own snapshot).
    if postgres:
        with db.write() as conn:
            level = conn.execute(text("SHOW transaction_isolation")).scalar_one()
        assert level == "read committed"
