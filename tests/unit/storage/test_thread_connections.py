"""Each thread keeps the connection of its last transaction for its next one
(certctl.storage.db._Kept), gives it back to the pool when it ends, and a nested
transaction still gets a connection of its own. On PostgreSQL: reads run in autocommit on
the kept connection, at most ``pool_size`` threads keep one, a kept connection opened
before the pool was invalidated (a disconnect) or older than the pool's recycle age is not
used again, and ``dispose`` gives back every thread's."""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
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


# PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url, pool_size=2)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def _in_autocommit(driver: psycopg.Connection[Any]) -> bool:
    return driver.autocommit


def _status(driver: psycopg.Connection[Any]) -> psycopg.pq.TransactionStatus:
    return driver.info.transaction_status


def _admin(postgres_url: str) -> psycopg.Connection[Any]:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True)


def _other_sessions(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _backend_pid(db: Database, write: bool) -> int:
    with db.write() if write else db.read() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    assert isinstance(pid, int)
    return pid


class _Holder:
    """A thread that runs one transaction, then stays alive (keeping its connection)
    and runs ``then`` when told to."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pid = 0
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.go = threading.Event()
        self.then: object = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        self.pid = _backend_pid(self.db, write=True)
        self.ready.set()
        self.go.wait(10)
        try:
            self.then = _backend_pid(self.db, write=False)
        except BaseException as exc:  # reported to the test
            self.error = exc

    def finish(self) -> None:
        self.go.set()
        self.thread.join(10)


@pytest.mark.postgres
def test_postgres_thread_reuses_its_connection_reads_in_autocommit(pg: Database) -> None:
    first = _driver(pg, write=True)
    assert isinstance(first, psycopg.Connection)
    with pg.read() as conn:
        assert id(conn.connection.driver_connection) == id(first)
        assert _in_autocommit(first)
        conn.execute(text("SELECT 1"))
        assert _status(first) == psycopg.pq.TransactionStatus.IDLE
    with pg.write() as conn:
        assert id(conn.connection.driver_connection) == id(first)
        assert not _in_autocommit(first)
        conn.execute(text("SELECT 1"))
        assert _status(first) == psycopg.pq.TransactionStatus.INTRANS
    assert _checked_out(pg) == 1


@pytest.mark.postgres
def test_postgres_at_most_pool_size_threads_keep_a_connection(pg: Database) -> None:
    holders = [_Holder(pg) for _ in range(3)]
    try:
        assert _checked_out(pg) == 2  # pool_size=2: the third gave its back
    finally:
        for holder in holders:
            holder.finish()
    assert all(holder.error is None for holder in holders)


@pytest.mark.postgres
def test_postgres_kept_connection_is_dropped_after_a_disconnect(
    pg: Database, postgres_url: str
) -> None:
    holder = _Holder(pg)
    try:
        mine = _backend_pid(pg, write=False)
        with _admin(postgres_url) as admin:
            for pid in (mine, holder.pid):  # and wait (up to 5 s) until each has ended
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        # The first statement on a dead connection fails that one request ...
        with pytest.raises(OperationalError):
            _backend_pid(pg, write=False)
    finally:
        holder.finish()
    # ... and the other thread's kept connection, dead as well, is not used again.
    assert holder.error is None, holder.error
    assert holder.then not in (None, holder.pid)
    assert _backend_pid(pg, write=True) != mine


@pytest.mark.postgres
def test_postgres_kept_connection_older_than_the_recycle_age_is_replaced(pg: Database) -> None:
    first = _backend_pid(pg, write=True)
    assert _backend_pid(pg, write=False) == first  # kept
    pool = pg.engine.pool
    recycle, pool._recycle = pool._recycle, 0  # every connection is now past its age
    try:
        assert _backend_pid(pg, write=False) != first
    finally:
        pool._recycle = recycle


@pytest.mark.postgres
def test_postgres_dispose_gives_back_every_threads_connection(
    pg: Database, postgres_url: str
) -> None:
    holder = _Holder(pg)
    try:
        _backend_pid(pg, write=True)
        pg.dispose()
        with _admin(postgres_url) as admin:
            # A closed connection's server process ends soon after, not at once.
            deadline = time.monotonic() + 5
            while (others := _other_sessions(admin)) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert others == 0
    finally:
        holder.finish()
    # The holder's next read works on a new connection, which is not kept.
    assert holder.error is None, holder.error
    assert _checked_out(pg) == 0
