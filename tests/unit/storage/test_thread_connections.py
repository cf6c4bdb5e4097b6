"""SQLite: each thread keeps the connection of its last transaction for its next one
(certctl.storage.db._Idle), gives it back to the pool when it ends, and a nested
transaction still gets a connection of its own."""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from certctl.storage.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite+pysqlite:///{tmp_path / 'certctl.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def _driver(db: Database, write: bool) -> object:
    with db.write() if write else db.read() as conn:
        conn.execute(text("SELECT 1"))
        return conn.connection.driver_connection


def _checked_out(db: Database) -> int:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


def test_a_thread_reuses_its_connection_for_reads_and_writes(db: Database) -> None:
    first = _driver(db, write=True)
    assert _driver(db, write=False) is first
    assert _driver(db, write=True) is first
    assert _checked_out(db) == 1  # kept by this thread, not in the pool


def test_a_nested_transaction_takes_another_connection(db: Database) -> None:
    with db.write() as outer, db.read() as inner:
        assert inner.connection.driver_connection is not outer.connection.driver_connection
        # The nested read does not see the outer write's uncommitted rows, as before.
        outer.execute(text("INSERT INTO server_secrets VALUES ('n', x'00', '2030-01-01')"))
        assert inner.execute(text("SELECT count(*) FROM server_secrets")).scalar() == 0
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM server_secrets")).scalar() == 1


def test_a_failed_write_leaves_no_transaction_behind(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(text("INSERT INTO server_secrets VALUES ('n', x'00', '2030-01-01')"))
        raise RuntimeError("boom")
    with db.write() as conn:  # the same connection: BEGIN works, the row is gone
        assert conn.execute(text("SELECT count(*) FROM server_secrets")).scalar() == 0


def test_a_thread_that_ends_gives_its_connection_back(db: Database) -> None:
    before = _checked_out(db)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "garbage collector ... non-checked-in" warning
        worker = threading.Thread(target=_driver, args=(db, True))
        worker.start()
        worker.join()
        gc.collect()
    assert _checked_out(db) == before


def test_release_gives_this_threads_connection_back(db: Database) -> None:
    _driver(db, write=True)
    assert _checked_out(db) == 1
    db.release_idle()
    assert _checked_out(db) == 0
