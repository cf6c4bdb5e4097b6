"""A FUSE file system that loses, on demand, what was never synced: a power cut.

``python -m tests.support.powercut BACKING MOUNTPOINT CUT_FLAG HOLD_FLAG`` mounts BACKING
at MOUNTPOINT (in the foreground, until unmounted). The backing directory holds only what
a disk would still hold after a power cut: a write lives in this process's memory until
``fsync``/``fdatasync`` of its file copies the file's written pages to the backing file,
and a file or directory created here exists on the backing side only until the cut unless
its directory was fsynced since (``fsyncdir``). When the mount goes away (``umount``):

- if the file CUT_FLAG exists, the power was cut: unsynced writes are dropped and
  unsynced entries removed, so the backing directory is what the next boot would find;
- otherwise it was a clean shutdown, which flushes everything, as an operating system
  does before it powers off.

While HOLD_FLAG exists, an fsync does not return (a slow disk): what it would sync is
not on the disk yet, and everything else goes on. Once CUT_FLAG exists, an fsync fails
(EIO) without syncing anything, held ones included: the power is going.

What is modelled is the promise POSIX makes and SQLite relies on (sqlite.org/atomiccommit
.html: data reaches the disk at fsync, a new file's name at an fsync of its directory),
strictly: nothing unsynced survives, however long ago it was written, so a store that
answers before its sync loses what it answered. Renames, unlinks and attribute changes
are passed through at once (durable at once); pages are 4 KiB. Locks are left to the
kernel (one host). Requests are served on several threads, one at a time except a held
fsync.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mfusepy as fuse

T = TypeVar("T")
PAGE = 4096
HOLD_POLL_S = 0.005


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """One request at a time: libfuse calls the operations from several threads."""

    @functools.wraps(method)
    def locked(self: PowerCutFS, *args: Any, **kwargs: Any) -> T:
        with self._mutex:
            return method(self, *args, **kwargs)

    return locked


class _File:
    """A file's current content (what readers of the mount see) and what of it differs
    from the backing file (the last synced content)."""

    __slots__ = ("data", "dirty", "resized")

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.dirty: set[int] = set()  # pages written since the last sync
        self.resized = False  # the length changed since the last sync


class PowerCutFS(fuse.Operations):  # type: ignore[misc]  # mfusepy has no type hints
    use_ns = True

    def __init__(self, backing: Path, cut_flag: Path, hold_flag: Path) -> None:
        self.backing = backing
        self.cut_flag = cut_flag
        self.hold_flag = hold_flag
        self.files: dict[str, _File] = {}
        self.unsynced_entries: set[str] = set()  # created here, parent not fsynced since
        self._mutex = threading.RLock()  # one request at a time, bar a held fsync

    # -- helpers -----------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return str(self.backing / path.lstrip("/"))

    def _file(self, path: str) -> _File:
        node = self.files.get(path)
        if node is None:
            try:
                with open(self._real(path), "rb") as handle:
                    node = _File(handle.read())
            except FileNotFoundError:
                raise fuse.FuseOSError(errno.ENOENT) from None
            self.files[path] = node
        return node

    def _sync(self, path: str) -> None:
        node = self.files.get(path)
        if node is None or not (node.dirty or node.resized):
            return
        with open(self._real(path), "r+b") as handle:
            if node.resized:
                handle.truncate(len(node.data))
            for page in sorted(node.dirty):
                start = page * PAGE
                if start < len(node.data):
                    handle.seek(start)
                    handle.write(node.data[start : start + PAGE])
        node.dirty.clear()
        node.resized = False

    # -- attributes and directories ----------------------------------------------------

    @_locked
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            raise fuse.FuseOSError(errno.ENOENT) from None
        attrs = {
            key: getattr(st, key)
            for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")
        }
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = getattr(st, key + "_ns")
        node = self.files.get(path)
        if node is not None and stat.S_ISREG(st.st_mode):
            attrs["st_size"] = len(node.data)
        return attrs

    @_locked
    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    @_locked
    def access(self, path: str, amode: int) -> int:
        if not os.path.lexists(self._real(path)):
            raise fuse.FuseOSError(errno.ENOENT)
        return 0

    @_locked
    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree")
        return {key: getattr(st, key) for key in (*keys, "f_files", "f_frsize", "f_namemax")}

    @_locked
    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        self.unsynced_entries.add(path)
        return 0

    @_locked
    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        self.unsynced_entries.discard(path)
        return 0

    @_locked
    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        prefix = path.rstrip("/") + "/"
        self.unsynced_entries = {
            p
            for p in self.unsynced_entries
            if not (p.startswith(prefix) and "/" not in p[len(prefix) :])
        }
        return 0

    @_locked
    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    @_locked
    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    @_locked
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    @_locked
    def rename(self, old: str, new: str) -> int:
        self._sync(old)  # renamed whole: a rename publishes what was written (simplified)
        os.rename(self._real(old), self._real(new))
        if old in self.files:
            self.files[new] = self.files.pop(old)
        else:
            self.files.pop(new, None)
        if old in self.unsynced_entries:
            self.unsynced_entries.discard(old)
            self.unsynced_entries.add(new)
        return 0

    @_locked
    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        self.files.pop(path, None)
        self.unsynced_entries.discard(path)
        return 0

    # -- files -------------------------------------------------------------------------

    @_locked
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.close(fd)
        self.files[path] = _File(b"")
        self.unsynced_entries.add(path)
        return 0

    @_locked
    def open(self, path: str, flags: int) -> int:
        node = self._file(path)
        if flags & os.O_TRUNC and node.data:
            node.data.clear()
            node.resized = True
        return 0

    @_locked
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._file(path).data[offset : offset + size])

    @_locked
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        node = self._file(path)
        end = offset + len(data)
        if end > len(node.data):
            node.data.extend(bytes(end - len(node.data)))
            node.resized = True
        node.data[offset:end] = data
        node.dirty.update(range(offset // PAGE, (end - 1) // PAGE + 1))
        return len(data)

    @_locked
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        node = self._file(path)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.resized = True
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        while True:
            if self.cut_flag.exists():
                raise fuse.FuseOSError(errno.EIO)
            if not self.hold_flag.exists():
                break
            time.sleep(HOLD_POLL_S)
        with self._mutex:
            self._sync(path)
        return 0

    @_locked
    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2) promises nothing about the disk

    @_locked
    def release(self, path: str, fh: int) -> int:
        return 0

    # -- the end of the mount ----------------------------------------------------------

    def power_cut(self) -> None:
        """Leave the backing directory as the disk would be after a cut: unsynced
        writes never happened and unsynced entries do not exist."""
        self.files.clear()
        for path in sorted(self.unsynced_entries, key=len, reverse=True):
            real = self._real(path)
            if os.path.isdir(real) and not os.path.islink(real):
                for root, dirs, names in os.walk(real, topdown=False):
                    for name in names:
                        os.unlink(os.path.join(root, name))
                    for name in dirs:
                        os.rmdir(os.path.join(root, name))
                os.rmdir(real)
            elif os.path.lexists(real):
                os.unlink(real)
        self.unsynced_entries.clear()

    def clean_shutdown(self) -> None:
        for path in list(self.files):
            if os.path.exists(self._real(path)):
                self._sync(path)
        self.files.clear()
        self.unsynced_entries.clear()


def main(argv: list[str]) -> int:
    backing, mountpoint, cut_flag, hold_flag = (Path(arg) for arg in argv)
    ops = PowerCutFS(backing, cut_flag, hold_flag)
    # attr_timeout/entry_timeout 0: sizes come from here, not from a kernel cache that a
    # cut would outlive.
    fuse.FUSE(ops, str(mountpoint), foreground=True, attr_timeout=0, entry_timeout=0)
    if cut_flag.exists():
        ops.power_cut()
    else:
        ops.clean_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
