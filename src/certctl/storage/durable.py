"""Group commit for a SQLite server process: commits reach the disk before any answer
that depends on them leaves, with one fsync for all the commits made meanwhile.

With ``synchronous=FULL`` SQLite fsyncs the WAL inside every COMMIT, while the writer's
lock is held and, on the event loop, while every connection of the worker waits. Here
the connections commit with ``synchronous=NORMAL`` (the WAL is written, not synced; a
crash keeps the database consistent but may take back the last commits,
sqlite.org/wal.html#fast) and a thread of this module fdatasyncs the WAL file once for
every commit made since its last sync. Whatever has been answered is then on the disk,
as with FULL, because nothing is answered before the sync that covers it:

- a writer waits for the sync of its own commit;
- a reader waits for the sync of every commit it could have seen: a commit is counted
  (``begin_commit``) before its COMMIT runs, so a reader that ends after seeing it also
  sees the count;
- within a request (``hold``) nothing waits transaction by transaction: what is needed
  is noted, and the answer waits once, on the event loop for ``WalSyncer.future``, on a
  handler thread in ``Hold.wait``;
- the answers an event loop holds are synced once per pass of the loop, after the
  callbacks of the pass have run (``WalSyncer._loop_sync``): every request the pass
  answered shares that sync. While syncs take under ``LOOP_SYNC_MAX_S`` the loop makes
  the fdatasync itself, which costs it that long: handing it to the thread and back
  cost more CPU than the sync (two wake-ups and two GIL hand-offs for a syscall of tens
  of microseconds: 5 to 8 % of an issuance's CPU, measured). When syncs are slower the
  thread makes them, and the loop goes on answering meanwhile;
- a commit that no answer reports (``Database.write(promised=False)``: a spent nonce
  beside reads) is not waited for; the next sync carries it, and the thread syncs it
  ``LAZY_SYNC_S`` after it when nobody asks sooner.

Several processes on one file (workers): a reader cannot know which commits of another
process it saw, nor whether they are synced. But an fdatasync of the WAL flushes every
process's frames written before it, so with ``shared`` every transaction, reads
included, counts as a commit to be synced (``visible``): its answer waits for a sync that
starts after it ended. One worker skips that for reads when nothing of its own is
unsynced. Other processes that are not servers (the CLI) commit with FULL, and may read
a server's commit up to one sync before it is on the disk; see docs/acme-server.md,
storage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path

log = logging.getLogger(__name__)

# A commit nobody waits for (a spent nonce, ``Database.write(promised=False)``) is synced
# at the latest this long after it, so a crash of the machine takes back at most this
# much of them; under load a sync someone waits for comes sooner and carries it.
LAZY_SYNC_S = 0.1

# The event loop makes its answers' sync itself while syncs take less than this (a
# moving average of the last few): longer would hold up every connection of the worker.
LOOP_SYNC_MAX_S = 0.001


class DurabilityError(RuntimeError):
    """The WAL could not be synced: commits that were made may not survive a crash."""


class Hold:
    """What the event loop's answer must wait for: the sync of commit ``needed``."""

    __slots__ = ("needed", "syncer")

    def __init__(self) -> None:
        self.needed = 0
        self.syncer: WalSyncer | None = None

    def wait(self) -> None:
        """On a thread: block until what was noted is on the disk (DurabilityError if it
        cannot be)."""
        if self.syncer is not None:
            self.syncer.wait(self.needed)

    def pending(self) -> asyncio.Future[None] | None:
        """None when nothing noted waits for a sync, else a future of the running loop
        that is done (or fails with ``DurabilityError``) when it has been made."""
        if self.syncer is None:
            return None
        return self.syncer.future(self.needed)


_HOLD: ContextVar[Hold | None] = ContextVar("certctl_durable_hold", default=None)


@contextmanager
def hold() -> Iterator[Hold]:
    """Within this block, on this thread or task, reads and writes of a grouped store do
    not wait for their sync: they note it in the hold, and the caller waits for
    ``hold.syncer.future(hold.needed)`` before answering (if ``hold.syncer`` is set)."""
    noted = Hold()
    token = _HOLD.set(noted)
    try:
        yield noted
    finally:
        _HOLD.reset(token)


class WalSyncer:
    """The counts of one process's commits to one SQLite file and the thread that syncs
    its WAL. Commits are made one at a time (the process's writer lock), so commit ``n``
    ended means commits 1..n have ended."""

    def __init__(self, db_path: str, *, shared: bool = False) -> None:
        """``shared``: other processes write to the file and answer from it too."""
        self.wal_path = f"{db_path}-wal"
        self._shared = shared
        self._in_flight = False  # a commit of this process between begin and end
        self._dir = str(Path(db_path).resolve().parent)
        self._cond = threading.Condition(threading.Lock())
        self._begun = 0  # commits counted, possibly still running
        self._last_commit = 0  # the number of the last commit (not a shared-mode mark)
        self._asleep = False  # the syncing thread waits with nothing to sync, untimed
        self._ended = 0  # commits whose COMMIT has returned (or failed)
        self._synced = 0  # commits on the disk
        self._tried = 0  # commits the last sync was for, whether it worked or not
        self._wanted = 0  # the highest commit someone waits for
        self._failed: str | None = None  # why the last failed sync failed
        self._failed_upto = 0  # commits the failed sync should have covered
        self._waiting: dict[asyncio.AbstractEventLoop, list[tuple[int, asyncio.Future[None]]]] = {}
        self._passes: set[asyncio.AbstractEventLoop] = set()  # loops with a sync to come
        self._sync_s = 0.0  # moving average of a sync's duration
        self._loop_wal: _WalFile | None = None  # the WAL as event loops sync it
        self._loop_wal_lock = threading.Lock()  # one loop sync at a time; close waits
        self._thread: threading.Thread | None = None
        self._closed = False
        self._syncs = 0
        self._commits = 0
        self._sync_failures = 0
        self._reported = 0  # commits already passed to ``observe``
        # Told (commits, syncs, failed syncs) since its last call, after each sync the
        # thread tries; from the syncing thread, outside the lock (metrics).
        self.observe: Callable[[int, int, int], None] | None = None

    # -- the writers' side -----------------------------------------------------------

    def begin_commit(self) -> int:
        """Count a commit about to run; its number, for ``end_commit`` and ``settle``.
        One at a time: the callers hold the process's writer lock."""
        with self._cond:
            self._begun += 1
            self._commits += 1
            self._in_flight = True
            self._last_commit = self._begun
            return self._begun

    def end_commit(self, _n: int) -> None:
        """The commit has returned (or failed: a sync then costs nothing but time). What
        was counted meanwhile (``visible`` in shared mode) has ended with it."""
        with self._cond:
            self._in_flight = False
            self._ended = self._begun
            if self._wanted > self._tried or self._asleep:
                self._cond.notify_all()
            elif self._thread is None and not self._closed:
                self._want(0)  # the thread syncs even commits nobody waits for, lazily

    def stats(self) -> tuple[int, int, int]:
        """(commits counted, WAL syncs made, WAL syncs failed) since the start."""
        with self._cond:
            return self._commits, self._syncs, self._sync_failures

    def visible(self) -> int:
        """What a transaction ending now must wait for: the highest commit of this
        process it may have seen; in shared mode a mark of its own, which only a sync
        that starts after now covers (it may have seen another process's commits)."""
        if not self._shared:
            return self._begun
        with self._cond:
            self._begun += 1
            if not self._in_flight:
                # Marks end at once; one counted during a commit ends with that commit,
                # so a sync up to the mark never skips the commit before it.
                self._ended = self._begun
            return self._begun

    # -- the waiters' side -----------------------------------------------------------

    def settle(self, n: int) -> None:
        """Make commit ``n`` durable before the caller answers: wait here, or note it in
        the caller's hold when there is one (a request, which waits once at its end)."""
        if n <= self._synced:
            return
        noted = _HOLD.get()
        if noted is not None:
            noted.syncer = self
            noted.needed = max(noted.needed, n)
            return
        self.wait(n)

    def wait(self, n: int) -> None:
        """Block until commit ``n`` is on the disk."""
        with self._cond:
            while self._synced < n:
                refusal = self._refusal(n)
                if refusal is not None:
                    raise refusal
                self._want(n)
                self._cond.wait()

    def future(self, n: int) -> asyncio.Future[None]:
        """A future of the running loop, done when commit ``n`` is on the disk."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._synced >= n:
                fut.set_result(None)
                return fut
            refusal = self._refusal(n)
            if refusal is not None:
                fut.set_exception(refusal)
                return fut
            self._waiting.setdefault(loop, []).append((n, fut))
            if loop not in self._passes:
                # After the callbacks already queued: this pass's other answers too.
                self._passes.add(loop)
                loop.call_soon(self._loop_sync, loop)
        return fut

    def _loop_sync(self, loop: asyncio.AbstractEventLoop) -> None:
        """The sync ``loop``'s futures wait for: made here, on the loop, when syncs are
        quick and every commit they wait for has ended; else asked of the thread."""
        with self._cond:
            self._passes.discard(loop)
            pending = self._waiting.get(loop)
            if not pending:
                return
            needed = max(n for n, _ in pending)
            if self._ended < needed or self._closed or self._sync_s > LOOP_SYNC_MAX_S:
                self._want(needed)
                return
            upto = self._ended
        with self._loop_wal_lock:
            if self._loop_wal is None:
                self._loop_wal = _WalFile(self.wal_path, self._dir)
            error, took = self._sync(self._loop_wal)
        self._synced_upto(upto, error, took, current=loop)

    def _want(self, n: int) -> None:
        # Caller holds the condition.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
            self._thread.start()
        if n > self._wanted:
            self._wanted = n
            self._cond.notify_all()

    def _refusal(self, n: int) -> DurabilityError | None:
        """Why commit ``n`` will not be synced, if it will not; a new exception each time
        (raised in many threads, one instance would share its traceback). Caller holds
        the condition."""
        if self._failed is not None and n <= self._failed_upto:
            return DurabilityError(self._failed)
        if self._closed:
            return DurabilityError("the store is closed")
        return None

    # -- the syncing thread ----------------------------------------------------------

    def _run(self) -> None:
        wal = _WalFile(self.wal_path, self._dir)
        try:
            self._syncing(wal)
        finally:
            wal.close()

    def _syncing(self, wal: _WalFile) -> None:
        while True:
            with self._cond:
                # Sync when someone waits for a commit that has ended and that no sync
                # was tried for (a failed one is not retried for the same commits: their
                # waiters have failed).
                while not self._closed and not (
                    self._wanted > self._tried and self._ended > self._tried
                ):
                    # A commit that ended and that nobody waits for: synced after a
                    # while all the same (LAZY_SYNC_S), if no one asks sooner.
                    unwanted = self._tried < self._last_commit <= self._ended
                    if not unwanted:
                        self._asleep = True  # end_commit wakes it for such a commit
                        self._cond.wait()
                        self._asleep = False
                    elif not self._cond.wait(LAZY_SYNC_S):
                        break
                if self._closed:
                    return
                upto = self._ended
            error, took = self._sync(wal)
            self._synced_upto(upto, error, took, current=None)

    def _sync(self, wal: _WalFile) -> tuple[str | None, float]:
        """Sync ``wal``: why it failed (None if it did not) and how long it took."""
        began = time.monotonic()
        try:
            wal.sync()
        except Exception as exc:  # an OSError; anything else must not end the thread
            # After a failed fsync the kernel may have dropped the dirty pages: what
            # was committed meanwhile cannot be promised (the waiters fail).
            log.critical("cannot sync the SQLite WAL %s: %s", self.wal_path, exc)
            return f"cannot sync the SQLite WAL: {exc}", time.monotonic() - began
        return None, time.monotonic() - began

    def _synced_upto(
        self,
        upto: int,
        error: str | None,
        took: float,
        *,
        current: asyncio.AbstractEventLoop | None,
    ) -> None:
        """Record a sync (by the thread or a loop) of the commits up to ``upto`` and
        settle the futures it covers; ``current``'s directly (this is its thread)."""
        with self._cond:
            # Both the thread and the loops sync: the marks only move forward.
            self._tried = max(self._tried, upto)
            self._sync_s += (took - self._sync_s) / 8
            if error is None:
                self._synced = max(self._synced, upto)
                self._syncs += 1
            else:
                self._failed, self._failed_upto = error, max(self._failed_upto, upto)
                self._sync_failures += 1
            self._cond.notify_all()
            ready = self._take_ready(upto)
            new_commits, self._reported = self._commits - self._reported, self._commits
        for loop, futures in ready.items():
            if loop is current:
                _settle_futures(futures, error)
                continue
            # A closed loop raises RuntimeError: nobody waits for those answers now.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_futures, futures, error)
        self._report(new_commits, failed=error is not None)

    def _report(self, commits: int, *, failed: bool) -> None:
        observe = self.observe
        if observe is None:
            return
        try:
            observe(commits, 0 if failed else 1, 1 if failed else 0)
        except Exception:  # metrics must not end the syncing thread
            log.exception("group commit metrics failed")

    def _take_ready(self, upto: int) -> dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]]:
        ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for loop, pending in list(self._waiting.items()):
            done = [fut for n, fut in pending if n <= upto]
            if done:
                ready[loop] = done
                rest = [(n, fut) for n, fut in pending if n > upto]
                if rest:
                    self._waiting[loop] = rest
                else:
                    del self._waiting[loop]
        return ready

    def close(self) -> None:
        """Stop the thread; whoever waits now is told the store is closed. A store used
        again afterwards (SQLAlchemy allows it after dispose) starts a new thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            pending, self._waiting = self._waiting, {}
            self._passes.clear()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        with self._loop_wal_lock:
            if self._loop_wal is not None:
                self._loop_wal.close()
                self._loop_wal = None
        with self._cond:
            self._closed = False
            self._thread = None
        for loop, waits in pending.items():
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(
                    _settle_futures, [fut for _, fut in waits], "the store is closed"
                )


class _WalFile:
    """The WAL as the syncing thread (or the event loops) sync it. Its descriptor is kept
    between syncs: an open, an fstat and a close per sync were as many system calls
    again, each one more wait for the GIL against a busy event loop. A ``stat`` of the
    path after each sync notices a WAL that SQLite has replaced, which is then opened and
    synced too."""

    __slots__ = ("_dir", "_fd", "_inode", "_path")

    def __init__(self, path: str, directory: str) -> None:
        self._path = path
        self._dir = directory
        self._fd: int | None = None
        self._inode: int | None = None

    def sync(self) -> None:
        if self._fd is None:
            self._open()
            return
        os.fdatasync(self._fd)
        try:
            inode: int | None = os.stat(self._path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            # The last connection to close checkpointed the WAL held here into the
            # database file and synced that (any synchronous setting but OFF) before
            # removing it; the commits being synced may be in a new WAL since.
            self.close()
            self._open()

    def _open(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: checkpointed into the database file, which was synced
        try:
            os.fdatasync(fd)
            inode = os.fstat(fd).st_ino
            if inode != self._inode:
                # A WAL file new to us: its directory entry must reach the disk too, or
                # a crash could lose the file with the commits in it.
                dir_fd = os.open(self._dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                self._inode = inode
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _settle_futures(futures: list[asyncio.Future[None]], error: str | None) -> None:
    for fut in futures:
        if fut.done():
            continue  # cancelled: the connection went away
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(DurabilityError(error))
