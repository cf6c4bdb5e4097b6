"""SQLite writers of one process queue on the process's own lock, not on SQLite's busy
handler (which polls with sleeps of up to 100 ms and gives up at the busy timeout)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import ConnectionPoolEntry

from certctl.storage.db import Database


def test_writers_of_one_process_never_meet_the_busy_handler(tmp_path: Path) -> None:
    db = Database(f"sqlite+pysqlite:///{tmp_path / 'w.db'}")
    db.migrate()

    # With a busy timeout of zero, a writer that reached SQLite's lock while another
    # holds it would fail at once ("database is locked"): only the queue can save it.
    @event.listens_for(db.engine, "connect")
    def _no_busy_wait(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    db.engine.dispose()
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))

    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            release.wait(10)

    def later(value: int) -> None:
        holding.wait(10)
        try:
            with db.write() as conn:
                conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first)]
    threads += [threading.Thread(target=later, args=(v,)) for v in range(2, 6)]
    for thread in threads:
        thread.start()
    holding.wait(10)
    time.sleep(0.2)  # let the later writers reach the queue while the first holds on
    release.set()
    for thread in threads:
        thread.join(20)
    assert errors == []
    with db.read() as conn:
        assert sorted(conn.execute(text("SELECT v FROM t")).scalars()) == [1, 2, 3, 4, 5]
    db.dispose()


def test_normal_is_the_operators_choice_and_nothing_else_is_taken(tmp_path: Path) -> None:
    db = Database(f"sqlite+pysqlite:///{tmp_path / 'n.db'}", synchronous="NORMAL")
    db.migrate()
    with db.write() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    with pytest.raises(ValueError):
        Database(f"sqlite+pysqlite:///{tmp_path / 'x.db'}", synchronous="OFF")


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: a commit is on disk before its answer leaves (NORMAL can
    lose the last transactions to a power loss), in every connection the pool opens."""
    db = Database(f"sqlite+pysqlite:///{tmp_path / 'd.db'}")
    db.migrate()
    with db.write() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    with db.read() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
