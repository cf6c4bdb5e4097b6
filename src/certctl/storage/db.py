"""Engine, transactions and start-up migrations.

SQLite (embedded default) runs in WAL mode with durable commits (``synchronous=FULL``,
unless the operator chose NORMAL); write transactions start with ``BEGIN IMMEDIATE`` so
two writers queue on the busy timeout instead of failing a lock upgrade.
Each thread keeps the connection of its last transaction for its next one (``_Kept``):
taking a connection from the pool and giving it back cost more than the transaction
around a statement (measured: about a tenth of an issuance's CPU on SQLite; on
PostgreSQL 20 to 40 µs per transaction, 4 to 8 % of an issuance's CPU with the
database's), and a SQLite connection's page cache stays valid between its own
transactions. On PostgreSQL at most ``pool_size`` threads keep one, so the pool's
overflow is always left to the others.
PostgreSQL uses psycopg 3 with a small pool, at READ COMMITTED (pinned, whatever the
server's default). Reads and single-statement writes run in autocommit: at READ COMMITTED
every statement takes its own snapshot even inside a transaction, so a BEGIN and a COMMIT
around them would add two round trips and nothing else. There is no pre-ping (a round
trip before every transaction, about 15 % of an issuance's CPU): the first statement that
finds its connection dead fails that one request, and SQLAlchemy's disconnect handling
then invalidates the whole pool, so a restarted server is reconnected without manual
steps; a kept connection opened before that invalidation (or older than the pool's
recycle age) is let go when its thread next takes it, as the pool would at a checkout.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, Pool

from certctl.config import SQLITE_SYNCHRONOUS  # config is light: it imports only domain
from certctl.storage.durable import WalSyncer

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same for every replica (pg_advisory_lock key).
_PG_MIGRATION_LOCK = 0x6365727463746C


SQLITE_BUSY_TIMEOUT_S = 15
SQLITE_MAX_OVERFLOW = 100


class WriteLockTimeoutError(RuntimeError):
    """A SQLite writer waited longer than the busy timeout for this process's turn."""


class Database:
    """The one handle on the store; everything above uses ``read()`` and ``write()``."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        synchronous: str = "FULL",
        group_commit: bool = False,
        shared: bool = False,
    ) -> None:
        """``synchronous``: SQLite's, FULL or NORMAL (``CERTCTL_SQLITE_SYNCHRONOUS``).
        ``group_commit``: keep FULL's promise with one WAL sync for many commits
        (``certctl.storage.durable``), for the server's processes; ``shared`` when other
        server processes use the file too (several workers)."""
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.synchronous = synchronous
        file = parsed.database if self.is_sqlite else None
        grouped = group_commit and synchronous == "FULL" and file not in (None, "", ":memory:")
        self.syncer = WalSyncer(str(file), shared=shared) if grouped else None
        self.engine = _make_engine(
            url,
            pool_size=pool_size,
            sqlite=self.is_sqlite,
            # Grouped: SQLite writes the WAL at COMMIT and the syncer makes it durable.
            synchronous="NORMAL" if grouped else synchronous,
        )
        self._writer = threading.RLock()
        # SQLite connections cost little: every thread may keep one.
        self._kept = _Kept(None if self.is_sqlite else pool_size)

    @property
    def commits_wait_for_the_disk(self) -> bool:
        """A COMMIT blocks its thread on an fsync (SQLite, FULL, without group commit):
        the event loop must not run one."""
        return self.is_sqlite and self.synchronous == "FULL" and self.syncer is None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Reads only. On SQLite one transaction (one snapshot); on PostgreSQL each statement
        sees what was committed when it started, as it would at READ COMMITTED anyway."""
        if not self.is_sqlite:
            with self._autocommit() as conn:
                yield conn
            return
        syncer = self.syncer
        try:
            with self._connection() as conn, conn.begin():
                _sqlite_begin(conn, "BEGIN DEFERRED")
                yield conn
        finally:
            if syncer is not None:
                # What it read may include commits not yet on the disk (durable).
                syncer.settle(syncer.visible())

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection for one transaction: this thread's kept one if it has one (a
        nested transaction takes another from the pool, as before)."""
        conn = self._kept.take()
        if conn is not None and _outdated(conn, self.engine.pool):
            conn.close()  # back to the pool, which reconnects it at its next checkout
            conn = None
        if conn is None:
            conn = self.engine.connect()
        try:
            yield conn
        finally:
            if conn.invalidated or not self._kept.keep(conn):
                conn.close()

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """PostgreSQL: a connection in autocommit for the block. Set on the driver, not
        through SQLAlchemy's isolation level, which is applied and reset at every checkout
        (measured: about 16 µs more per use)."""
        with self._connection() as conn:
            driver = conn.connection.driver_connection
            driver.autocommit = True  # type: ignore[union-attr]
            try:
                yield conn
            finally:
                try:
                    if conn.in_transaction():  # begun by SQLAlchemy only: nothing to send
                        conn.rollback()
                    driver.autocommit = False  # type: ignore[union-attr]
                except Exception:  # a broken connection: never kept
                    log.debug("connection dropped after autocommit", exc_info=True)
                    conn.invalidate()

    @contextmanager
    def statement(self, *, promised: bool = True) -> Iterator[Connection]:
        """For one statement that is atomic by itself (an INSERT ... SELECT, say): on
        PostgreSQL in autocommit, one round trip instead of three; on SQLite a write
        transaction, because the writers' lock must still be taken. ``promised`` as for
        ``write``."""
        if not self.is_sqlite:
            with self._autocommit() as conn:
                yield conn
            return
        with self.write(promised=promised) as conn:
            yield conn

    @contextmanager
    def write(self, *, promised: bool = True) -> Iterator[Connection]:
        """One transaction that commits on success and rolls back on any exception.

        ``promised=False``: no answer reports this commit, so with group commit the
        caller's answer waits only for the commits the transaction could have read, not
        for its own. For a commit whose loss in a crash changes no answer: a spent nonce
        (RFC 8555 §6.5) beside reads. Its record guards against a replay, which a crash
        before the sync would let through whether or not the answer had waited for it;
        the next sync anyone waits for carries it to the disk, or a sync soon after
        (``durable.LAZY_SYNC_S``)."""
        if not self.is_sqlite:
            with self._connection() as conn, conn.begin():
                yield conn
            return
        # SQLite has one writer at a time. Writers of this process queue on a lock, in
        # order, rather than on SQLite's busy handler, which polls with sleeps of up to
        # 100 ms; only writers of other processes (workers, the CLI) still meet it.
        if not self._writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise WriteLockTimeoutError(f"no SQLite write lock within {SQLITE_BUSY_TIMEOUT_S} s")
        syncer = self.syncer
        needed: int | None = None  # the commit the answer waits for; None: what it read
        try:
            with self._connection() as conn, conn.begin() as transaction:
                _sqlite_begin(conn, "BEGIN IMMEDIATE")
                yield conn
                if syncer is not None:
                    # What its reads could have seen, taken before its own commit is
                    # counted (the writer's lock is held: every earlier commit ended).
                    seen = 0 if promised else syncer.visible()
                    # Counted before the COMMIT: a reader that sees it sees the count.
                    needed = n = syncer.begin_commit()
                    try:
                        transaction.commit()
                    finally:
                        syncer.end_commit(n)
                    if not promised:
                        needed = seen
        finally:
            self._writer.release()
            # After the lock: the next writers commit while this one waits for the
            # disk, and one sync then covers them all (a failed transaction waits for
            # what it may have read: its refusal can depend on it).
            if syncer is not None:
                syncer.settle(syncer.visible() if needed is None else needed)

    def wait_durable(self) -> None:
        """Block until what this thread committed or read is on the disk, even inside a
        hold: for a step that shows a commit outside the store before the answer leaves
        (a revocation's OCSP and CRL refresh)."""
        if self.syncer is not None:
            self.syncer.wait(self.syncer.visible())

    def migrate(self) -> None:
        """Apply migrations to head. Idempotent, and safe when replicas start together:
        PostgreSQL serialises on an advisory lock, SQLite on a lock file beside the db."""
        if self.is_sqlite:
            self._migrate_sqlite()
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                self._upgrade(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()

    def _migrate_sqlite(self) -> None:
        db_path = make_url(self.url).database
        if not db_path or db_path == ":memory:":
            with self.engine.connect() as conn:
                self._upgrade(conn)
            return
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{db_path}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            engine = _migration_engine(self.url)
            try:
                with engine.connect() as conn:
                    self._upgrade(conn)
            finally:
                engine.dispose()

    @staticmethod
    def _upgrade(conn: Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()

    def release_idle(self) -> None:
        """Give this thread's kept connection back to the pool (a thread that is done
        with the store; tests whose pool holds a single connection)."""
        self._kept.close_mine()

    def dispose(self) -> None:
        self._kept.close_all()
        self.engine.dispose()
        if self.syncer is not None:
            self.syncer.close()


class _Kept:
    """Each thread's idle connection, kept between that thread's transactions.

    ``limit``: how many threads may keep one (None: any). When a thread ends, its slot
    goes and ``_Slot.__del__`` gives the connection back to the pool (SQLAlchemy would
    warn about one collected unreturned); ``close_all`` gives back every thread's, and no
    connection is kept after it."""

    def __init__(self, limit: int | None) -> None:
        self._local = threading.local()
        self._limit = limit
        self._lock = threading.Lock()
        # Slots of live threads; a dead thread's leaves the set when it is collected.
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._closed = False

    def take(self) -> Connection | None:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None or slot.conn is None:
            return None
        with self._lock:
            conn, slot.conn = slot.conn, None
        return conn

    def keep(self, conn: Connection) -> bool:
        slot: _Slot | None = getattr(self._local, "slot", None)
        with self._lock:
            if self._closed:
                return False
            if slot is None:
                if self._limit is not None and len(self._slots) >= self._limit:
                    return False
                slot = self._local.slot = _Slot()
                self._slots.add(slot)
            if slot.conn is not None:
                return False
            slot.conn = conn
            return True

    def close_mine(self) -> None:
        conn = self.take()
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            kept = [slot.conn for slot in list(self._slots) if slot.conn is not None]
            for slot in list(self._slots):
                slot.conn = None
        for conn in kept:
            conn.close()


class _Slot:
    __slots__ = ("__weakref__", "conn")

    def __init__(self) -> None:
        self.conn: Connection | None = None

    def __del__(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _outdated(conn: Connection, pool: Pool) -> bool:
    """What the pool checks at a checkout, which a kept connection skips: opened before
    the pool was invalidated (a disconnect seen on any of its connections), or older
    than its recycle age; or a driver connection known to be closed. SQLAlchemy's
    private attributes, held to by ``tests/unit/storage/test_thread_connections.py``."""
    fairy = conn.connection
    record = getattr(fairy, "_connection_record", None)
    if record is None or getattr(fairy.driver_connection, "closed", False):
        return True
    started: float = record.starttime
    recycle: int = pool._recycle
    return bool(pool._invalidate_time > started) or (
        recycle > -1 and time.time() - started > recycle
    )


def _make_engine(url: str, *, pool_size: int, sqlite: bool, synchronous: str) -> Engine:
    if not sqlite:
        return create_engine(
            url,
            isolation_level="READ COMMITTED",
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            pool_recycle=1800,
        )
    # Every thread that uses the store keeps a connection (_Kept): SQLite's cost little,
    # so the pool may grow well past the threads a process runs.
    engine = create_engine(url, pool_size=pool_size, max_overflow=SQLITE_MAX_OVERFLOW)
    return _sqlite_engine(engine, synchronous)


def _migration_engine(url: str) -> Engine:
    """SQLite for Alembic, which begins a transaction per migration on SQLite (no
    transactional DDL) through SQLAlchemy alone: a "begin" listener turns each into a
    real SQLite transaction, so a migration that fails leaves nothing half done."""
    engine = _sqlite_engine(create_engine(url, poolclass=NullPool), "FULL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        _sqlite_begin(conn, "BEGIN DEFERRED")

    return engine


def _sqlite_engine(engine: Engine, synchronous: str) -> Engine:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # We issue BEGIN ourselves (_sqlite_begin); pysqlite's implicit transactions would not
        # let us choose IMMEDIATE for writers.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL (the default): every commit reaches the disk (the WAL is fsynced) before
        # the answer that depends on it leaves. With NORMAL a power loss or an OS crash
        # can take back the last transactions (sqlite.org/pragma.html#pragma_synchronous):
        # an acknowledged revocation, or the serial recorded before signing (RFC 8555
        # §7.4 finalize). PostgreSQL's default (synchronous_commit=on) promises as FULL.
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def _sqlite_begin(conn: Connection, begin: str) -> None:
    """Start the SQLite transaction SQLAlchemy has just begun (pysqlite's ``do_begin`` sends
    nothing; with ``isolation_level = None`` the driver would not either). Straight to the
    driver, and from here rather than from a "begin" event: an engine with any connection
    event listener runs SQLAlchemy's event dispatch around every statement it executes
    (measured: about 5 % of an issuance's CPU)."""
    conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]
