"""Group commit (certctl.storage.durable) on a real SQLite file: nothing a writer or a
reader did is answered before the WAL holding it has been fdatasynced, one sync covers
every commit made meanwhile, and a failed sync fails whoever waited for it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from certctl.storage import durable
from certctl.storage.db import Database
from certctl.storage.durable import DurabilityError, hold


class _Disk:
    """os.fdatasync as the syncer sees it: recorded, and held back while ``gate`` is
    clear, so a test can look at the world between a commit and its sync."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail: OSError | None = None
        self.synced_sizes: list[int] = []  # the WAL's size at each sync
        self.entered = threading.Event()
        self._real = os.fdatasync  # the module is os itself: keep the real one
        self.calls = 0
        self.delay = 0.0  # seconds each sync takes on top of the real one
        self.threads: list[str] = []  # the thread that made each sync

    def hold_back(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def fdatasync(self, fd: int) -> None:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(10)
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self._real(fd)
        self.synced_sizes.append(os.fstat(fd).st_size)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> _Disk:
    fake = _Disk()
    monkeypatch.setattr(os, "fdatasync", fake.fdatasync)
    return fake


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite+pysqlite:///{tmp_path / 'g.db'}", group_commit=True)
    database.migrate()
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    yield database
    database.dispose()


def _wal_size(db: Database) -> int:
    assert db.syncer is not None
    return os.path.getsize(db.syncer.wal_path)


def _in_thread(target: object) -> tuple[threading.Thread, list[BaseException], threading.Event]:
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors, done


def test_grouped_connections_commit_without_a_sync_of_their_own(db: Database) -> None:
    # SQLite's own sync at COMMIT is what group commit replaces (PRAGMA synchronous:
    # 1 is NORMAL); the WAL stays the journal.
    with db.read() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_a_write_returns_only_after_the_wal_holding_it_is_synced(db: Database, disk: _Disk) -> None:
    disk.hold_back()

    def write() -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))

    thread, errors, done = _in_thread(write)
    assert disk.entered.wait(5)
    size_after_commit = _wal_size(db)
    assert not done.wait(0.2), "the write returned before its sync"
    disk.gate.set()
    thread.join(5)
    assert errors == []
    # The sync that released it saw the whole commit in the WAL.
    assert disk.synced_sizes and disk.synced_sizes[-1] >= size_after_commit


def test_a_reader_that_saw_a_commit_waits_for_its_sync(db: Database, disk: _Disk) -> None:
    disk.hold_back()
    writer, _, _ = _in_thread(lambda: _insert(db, 7))
    assert disk.entered.wait(5)  # committed, being synced

    seen: list[int] = []

    def read() -> None:
        with db.read() as conn:
            seen.extend(conn.execute(text("SELECT v FROM t")).scalars())

    reader, errors, done = _in_thread(read)
    assert not done.wait(0.2), "the reader answered from a commit not yet on the disk"
    disk.gate.set()
    reader.join(5)
    writer.join(5)
    assert errors == [] and seen == [7]


def test_a_reader_with_nothing_unsynced_does_not_wait(db: Database, disk: _Disk) -> None:
    _insert(db, 1)
    syncs = len(disk.synced_sizes)
    disk.hold_back()  # any sync now would hang the read
    with db.read() as conn:
        assert list(conn.execute(text("SELECT v FROM t")).scalars()) == [1]
    assert len(disk.synced_sizes) == syncs
    disk.gate.set()


def test_one_sync_covers_the_writers_that_queued_behind_it(db: Database, disk: _Disk) -> None:
    _insert(db, 0)
    before = len(disk.synced_sizes)
    disk.hold_back()
    first, _, _ = _in_thread(lambda: _insert(db, 1))
    assert disk.entered.wait(5)  # the first sync is held: the others commit meanwhile
    others = [_in_thread(lambda v=v: _insert(db, v)) for v in range(2, 10)]
    deadline = time.monotonic() + 5
    while _count(db) < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # each has returned from its COMMIT and waits for the sync
    disk.gate.set()
    first.join(5)
    for thread, errors, _ in others:
        thread.join(5)
        assert errors == []
    # One sync for the first commit, one for the eight made while it ran.
    assert len(disk.synced_sizes) - before == 2
    assert db.syncer is not None
    commits, syncs, failures = db.syncer.stats()
    assert commits >= 10 and failures == 0 and syncs <= commits - 7
    assert sorted(_values(db)) == list(range(10))


def test_on_a_slow_disk_the_answer_waits_not_the_loop(db: Database, disk: _Disk) -> None:
    async def run() -> None:
        # A sync slower than LOOP_SYNC_MAX_S, made on the loop: later ones go to the thread.
        disk.delay = 0.02
        with hold() as held:
            _insert(db, 1)
        first = held.pending()
        assert first is not None
        await asyncio.wait_for(first, 5)
        disk.delay = 0.0
        disk.hold_back()
        with hold() as held:
            _insert(db, 3)  # returns at once: the loop must not block on the disk
        pending = held.pending()
        assert pending is not None
        await asyncio.sleep(0.1)  # the loop runs on while the sync is held back
        assert not pending.done(), "the hold ended before the sync"
        disk.gate.set()
        await asyncio.wait_for(pending, 5)

    asyncio.run(run())
    assert disk.synced_sizes
    assert disk.threads[-1] == "wal-sync"


@pytest.mark.usefixtures("no_lazy_sync")
def test_on_a_quick_disk_the_loop_syncs_once_for_the_answers_of_a_pass(
    db: Database, disk: _Disk
) -> None:
    """Every answer held in one pass of the loop shares one sync, made on the loop: no
    hand-off to the thread and back (certctl.storage.durable, LOOP_SYNC_MAX_S)."""

    async def run() -> int:
        futures = []
        for value in range(5):  # five requests answered in one pass
            with hold() as held:
                _insert(db, value)
            pending = held.pending()
            assert pending is not None
            futures.append(pending)
        before = disk.calls
        await asyncio.wait_for(asyncio.gather(*futures), 5)
        return disk.calls - before

    loop_thread = threading.current_thread().name
    assert asyncio.run(run()) == 1
    assert disk.threads[-1] == loop_thread
    assert sorted(_values(db)) == list(range(5))


def test_a_failed_sync_on_the_loop_fails_the_held_answers_of_its_pass(
    db: Database, disk: _Disk
) -> None:
    async def run() -> list[BaseException | None]:
        futures = []
        for value in range(3):
            with hold() as held:
                _insert(db, value)
            pending = held.pending()
            assert pending is not None
            futures.append(pending)
        disk.fail = OSError(5, "Input/output error")
        done = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
        return list(done)

    loop_thread = threading.current_thread().name
    outcomes = asyncio.run(run())
    assert [type(o) for o in outcomes] == [DurabilityError] * 3
    assert disk.threads[-1] == loop_thread
    disk.fail = None
    _insert(db, 9)  # the disk is back: later commits are answered again


def test_a_hold_with_nothing_unsynced_has_nothing_pending(db: Database, disk: _Disk) -> None:
    _insert(db, 1)
    with hold() as held, db.read() as conn:
        conn.execute(text("SELECT v FROM t")).all()
    assert held.pending() is None


def test_a_failed_sync_fails_the_writer_and_the_held_answer(db: Database, disk: _Disk) -> None:
    disk.fail = OSError(5, "Input/output error")
    with pytest.raises(DurabilityError):
        _insert(db, 1)

    async def held() -> None:
        with hold() as noted:
            _insert(db, 2)
        pending = noted.pending()
        assert pending is not None
        with pytest.raises(DurabilityError):
            await asyncio.wait_for(pending, 5)

    asyncio.run(held())
    # Once the disk is back, later commits are synced and answered again.
    disk.fail = None
    _insert(db, 3)


def test_a_write_that_fails_waits_for_what_it_may_have_read(db: Database, disk: _Disk) -> None:
    disk.hold_back()
    writer, _, _ = _in_thread(lambda: _insert(db, 1))
    assert disk.entered.wait(5)

    def refuse() -> None:
        with db.write() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
            raise LookupError("refused, from what it read")

    thread, errors, done = _in_thread(refuse)
    assert not done.wait(0.2), "a refusal based on an unsynced commit left first"
    disk.gate.set()
    thread.join(5)
    writer.join(5)
    assert [type(e) for e in errors] == [LookupError]


def test_without_group_commit_sqlite_syncs_at_every_commit(tmp_path: Path, disk: _Disk) -> None:
    plain = Database(f"sqlite+pysqlite:///{tmp_path / 'p.db'}")
    plain.migrate()
    try:
        assert plain.syncer is None
        with plain.read() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        plain.dispose()


def test_group_commit_is_for_durable_sqlite_commits_only(tmp_path: Path) -> None:
    normal = Database(
        f"sqlite+pysqlite:///{tmp_path / 'n.db'}", synchronous="NORMAL", group_commit=True
    )
    assert normal.syncer is None  # the operator chose not to wait for the disk
    assert not normal.commits_wait_for_the_disk
    grouped = Database(f"sqlite+pysqlite:///{tmp_path / 'g.db'}", group_commit=True)
    assert grouped.syncer is not None and not grouped.commits_wait_for_the_disk
    plain = Database(f"sqlite+pysqlite:///{tmp_path / 'f.db'}")
    assert plain.commits_wait_for_the_disk


def _insert(db: Database, value: int) -> None:
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})


def _values(db: Database) -> list[int]:
    with db.read() as conn:
        return list(conn.execute(text("SELECT v FROM t")).scalars())


def _count(db: Database) -> int:
    # Read through a plain connection: a grouped read would wait for the held sync.
    assert db.syncer is not None
    with closing(sqlite3.connect(db.syncer.wal_path.removesuffix("-wal"))) as raw:
        return int(raw.execute("SELECT count(*) FROM t").fetchone()[0])


def test_a_failed_sync_is_not_retried_in_a_loop(db: Database, disk: _Disk) -> None:
    disk.fail = OSError(5, "Input/output error")
    before = disk.calls
    with pytest.raises(DurabilityError):
        _insert(db, 1)
    time.sleep(0.2)
    assert disk.calls - before == 1  # one try for that commit, then the thread sleeps


def test_a_store_used_again_after_dispose_syncs_again(db: Database, disk: _Disk) -> None:
    _insert(db, 1)
    db.dispose()
    _insert(db, 2)  # a new syncing thread: the write is answered, not refused
    assert sorted(_values(db)) == [1, 2]


def test_wait_durable_waits_even_inside_a_hold(db: Database, disk: _Disk) -> None:
    disk.hold_back()

    def revoke_then_publish() -> None:
        with hold():
            _insert(db, 1)  # noted, not waited for
            db.wait_durable()  # what OCSP is about to show must be on the disk first

    thread, errors, done = _in_thread(revoke_then_publish)
    assert disk.entered.wait(5)
    assert not done.wait(0.2), "published before the sync"
    disk.gate.set()
    thread.join(5)
    assert errors == []


def _shared_pair(tmp_path: Path) -> tuple[Database, Database]:
    url = f"sqlite+pysqlite:///{tmp_path / 's.db'}"
    first = Database(url, group_commit=True, shared=True)
    first.migrate()
    with first.write() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    return first, Database(url, group_commit=True, shared=True)


def test_shared_a_read_waits_for_a_sync_begun_after_it(tmp_path: Path, disk: _Disk) -> None:
    # Two workers: the reader cannot know whether what it saw of the other is synced, so
    # its answer waits for a sync of its own that starts after the read.
    writer, reader = _shared_pair(tmp_path)
    try:
        _insert(writer, 1)
        before = disk.calls
        with hold() as held, reader.read() as conn:
            assert list(conn.execute(text("SELECT v FROM t")).scalars()) == [1]

        async def answer() -> None:
            pending = held.pending()
            assert pending is not None
            await asyncio.wait_for(pending, 5)

        asyncio.run(answer())
        assert disk.calls > before
    finally:
        writer.dispose()
        reader.dispose()


def test_shared_a_mark_during_a_commit_is_not_synced_before_that_commit(
    tmp_path: Path,
) -> None:
    syncer = durable.WalSyncer(str(tmp_path / "m.db"), shared=True)
    n = syncer.begin_commit()  # a commit of this process is running
    mark = syncer.visible()
    assert mark > n
    assert syncer._ended < n  # neither has ended: no sync may claim them yet
    syncer.end_commit(n)
    assert syncer._ended >= mark
    syncer.close()


def _spend(db: Database, value: int, seen: list[int] | None = None) -> None:
    """A transaction like a nonce spent beside reads: its commit is not promised."""
    with db.write(promised=False) as conn:
        if seen is not None:
            seen.extend(conn.execute(text("SELECT v FROM t")).scalars())
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})


@pytest.fixture
def no_lazy_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits nobody waits for stay unsynced for the test's length."""
    monkeypatch.setattr(durable, "LAZY_SYNC_S", 60.0)


@pytest.mark.usefixtures("no_lazy_sync")
def test_an_unpromised_commit_is_answered_before_its_sync(db: Database, disk: _Disk) -> None:
    _insert(db, 1)
    calls = disk.calls
    disk.hold_back()  # any sync now would hang the spend
    _spend(db, 2)
    assert disk.calls == calls, "an unpromised commit asked for a sync of its own"
    disk.gate.set()
    # The next promised commit's sync carries it to the disk.
    size = _wal_size(db)
    _insert(db, 3)
    assert disk.synced_sizes[-1] >= size
    assert sorted(_values(db)) == [1, 2, 3]


def test_an_unpromised_commit_waits_for_what_it_read(db: Database, disk: _Disk) -> None:
    disk.hold_back()
    writer, _, _ = _in_thread(lambda: _insert(db, 7))
    assert disk.entered.wait(5)  # committed, being synced
    seen: list[int] = []
    spender, errors, done = _in_thread(lambda: _spend(db, 8, seen))
    assert not done.wait(0.2), "answered from a commit not yet on the disk"
    disk.gate.set()
    spender.join(5)
    writer.join(5)
    assert errors == [] and seen == [7]


@pytest.mark.usefixtures("no_lazy_sync")
def test_an_unpromised_commit_in_a_hold_notes_only_what_it_read(db: Database, disk: _Disk) -> None:
    _insert(db, 1)
    disk.hold_back()
    with hold() as held:
        _spend(db, 2)
    assert held.pending() is None
    disk.gate.set()


def test_shared_an_unpromised_commit_still_waits_for_a_sync_after_its_reads(
    tmp_path: Path, disk: _Disk
) -> None:
    # Several workers: what it read of the other process must be on the disk first.
    writer, spender = _shared_pair(tmp_path)
    try:
        _insert(writer, 1)
        before = disk.calls
        seen: list[int] = []
        _spend(spender, 2, seen)
        assert seen == [1] and disk.calls > before
    finally:
        writer.dispose()
        spender.dispose()


def test_the_syncer_reports_every_commit_and_sync_it_counted(db: Database, disk: _Disk) -> None:
    assert db.syncer is not None
    reported = [0, 0, 0]

    def observe(commits: int, syncs: int, failures: int) -> None:
        reported[0] += commits
        reported[1] += syncs
        reported[2] += failures

    db.syncer.observe = observe
    base = db.syncer.stats()
    for value in range(5):
        _insert(db, value)
    disk.fail = OSError(5, "Input/output error")
    with pytest.raises(DurabilityError):
        _insert(db, 5)
    disk.fail = None
    _insert(db, 6)
    now = db.syncer.stats()
    # Reported from the syncing thread right after each sync, before it waits again.
    deadline = time.monotonic() + 5
    while reported[1] + reported[2] < now[1] + now[2] - base[1] - base[2]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert reported == [now[0] - base[0], now[1] - base[1], 1]


def test_metrics_that_fail_do_not_stop_the_syncer(db: Database, disk: _Disk) -> None:
    assert db.syncer is not None

    def broken(_commits: int, _syncs: int, _failures: int) -> None:
        raise ValueError("a broken metrics backend")

    db.syncer.observe = broken
    _insert(db, 1)
    _insert(db, 2)  # would hang if the first report had ended the thread
    assert sorted(_values(db)) == [1, 2]


def test_a_commit_nobody_waits_for_is_synced_soon_all_the_same(
    db: Database, disk: _Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "LAZY_SYNC_S", 0.05)
    _insert(db, 1)
    calls = disk.calls
    _spend(db, 2)
    size = _wal_size(db)
    deadline = time.monotonic() + 5
    while disk.calls == calls:
        assert time.monotonic() < deadline, "a spend nobody waited for was never synced"
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while not disk.synced_sizes or disk.synced_sizes[-1] < size:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_shared_marks_alone_cause_no_lazy_sync(tmp_path: Path, disk: _Disk) -> None:
    # Several workers: a read is a mark, not a commit; an idle worker does not sync for it.
    writer, reader = _shared_pair(tmp_path)
    try:
        assert reader.syncer is not None
        reader.syncer.visible()
        with reader.syncer._cond:
            reader.syncer._want(0)  # starts the thread, wants nothing
        calls = disk.calls
        time.sleep(0.3)
        assert disk.calls == calls
    finally:
        writer.dispose()
        reader.dispose()


def test_a_store_whose_first_commits_nobody_waits_for_syncs_them_lazily(
    db: Database, disk: _Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "LAZY_SYNC_S", 0.05)
    db.dispose()  # no syncing thread now, until a commit needs one
    calls = disk.calls
    _spend(db, 1)
    deadline = time.monotonic() + 5
    while disk.calls == calls:
        assert time.monotonic() < deadline, "no thread came to sync the spend"
        time.sleep(0.01)
