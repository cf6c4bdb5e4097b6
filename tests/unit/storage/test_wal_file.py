"""The syncing thread keeps the WAL's descriptor between syncs (certctl.storage.durable):
one open for many syncs, and a WAL that SQLite replaced is noticed and synced, with its
directory, before the sync counts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from certctl.storage.db import Database
from certctl.storage.durable import _WalFile


class _Calls:
    """What reached the disk: the inode of each fdatasync'd file, and each fsync'd one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.datasynced: list[int] = []
        self.fsynced: list[int] = []
        self.opened: list[str] = []
        real_fdatasync, real_fsync, real_open = os.fdatasync, os.fsync, os.open

        def fdatasync(fd: int) -> None:
            real_fdatasync(fd)
            self.datasynced.append(os.fstat(fd).st_ino)

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self.fsynced.append(os.fstat(fd).st_ino)

        def open_(path: str, flags: int, *args: int, **kwargs: int) -> int:
            self.opened.append(str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "open", open_)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> _Calls:
    return _Calls(monkeypatch)


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[tuple[_WalFile, Path]]:
    path = tmp_path / "x.db-wal"
    path.write_bytes(b"first")
    held = _WalFile(str(path), str(tmp_path))
    yield held, path
    held.close()


def test_many_syncs_open_the_wal_once(wal: tuple[_WalFile, Path], calls: _Calls) -> None:
    held, path = wal
    for _ in range(5):
        held.sync()
    assert calls.opened.count(str(path)) == 1
    assert calls.datasynced == [path.stat().st_ino] * 5
    assert len(calls.fsynced) == 1  # the directory, once: the file was new


def test_a_replaced_wal_is_synced_with_its_directory(
    wal: tuple[_WalFile, Path], calls: _Calls, tmp_path: Path
) -> None:
    held, path = wal
    held.sync()
    old = path.stat().st_ino
    path.unlink()
    path.write_bytes(b"second")  # what SQLite does after the last connection closed
    new = path.stat().st_ino
    assert new != old  # the held descriptor keeps the old inode from being reused
    held.sync()
    assert calls.datasynced[-1] == new
    assert calls.fsynced == [tmp_path.stat().st_ino] * 2  # its directory entry too
    held.sync()
    assert calls.datasynced[-1] == new


def test_a_removed_wal_is_nothing_to_sync(wal: tuple[_WalFile, Path], calls: _Calls) -> None:
    held, path = wal
    held.sync()
    path.unlink()
    held.sync()  # checkpointed and removed: nothing left to sync, no error
    path.write_bytes(b"again")
    held.sync()
    assert calls.datasynced[-1] == path.stat().st_ino


def test_a_grouped_store_opens_its_wal_once_for_many_commits(tmp_path: Path, calls: _Calls) -> None:
    database = Database(f"sqlite+pysqlite:///{tmp_path / 'g.db'}", group_commit=True)
    database.migrate()
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (v INTEGER)"))
        for value in range(5):
            with database.write() as conn:
                conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        assert database.syncer is not None
        assert calls.opened.count(database.syncer.wal_path) == 1
        assert len(calls.datasynced) >= 6  # every commit was waited for and synced
    finally:
        database.dispose()
