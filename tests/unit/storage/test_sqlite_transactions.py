"""SQLite transactions as ``Database`` opens them: writers start with BEGIN IMMEDIATE,
readers see one snapshot, and a failed write leaves nothing behind."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from certctl.storage.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite+pysqlite:///{tmp_path / 't.db'}")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    yield database
    database.dispose()


def _other(db: Database) -> sqlite3.Connection:
    path = db.engine.url.database
    assert path is not None
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def _count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_failed_write_rolls_back_every_statement(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("boom")
    assert _count(db) == 0


def test_a_write_holds_the_write_lock_from_its_start(db: Database) -> None:
    # BEGIN IMMEDIATE: the lock is taken before the first statement, so two writers
    # queue instead of failing a lock upgrade half-way.
    other = _other(db)
    with db.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_a_read_sees_one_snapshot(db: Database) -> None:
    other = _other(db)
    with db.read() as conn:
        before = conn.execute(text("SELECT count(*) FROM t")).scalar_one()
        other.execute("INSERT INTO t VALUES (3)")  # autocommit, from another connection
        after = conn.execute(text("SELECT count(*) FROM t")).scalar_one()
    assert before == after == 0
    assert _count(db) == 1
    other.close()
