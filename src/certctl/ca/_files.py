"""Small filesystem helpers shared by the CA: private directories, atomic writes, a lock.

Every file the CA writes goes through ``write_atomic`` so a reader (another worker process
starting at the same time) sees either the old content or the new, never half a PEM.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


def is_read_only_error(exc: OSError) -> bool:
    """Writing into a directory mounted read-only (a fleet's shared CA) failed."""
    return exc.errno == errno.EROFS


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700: it holds keys or their neighbours."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        try:
            os.chmod(path, PRIVATE_DIR_MODE)
        except OSError as exc:
            # A read-only mount (the CA shared by a fleet): its owner sets the modes.
            if not is_read_only_error(exc):
                raise


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new temporary file with ``mode``, fsync it, rename it over ``path``.

    The temporary file is created with O_CREAT|O_EXCL and its final mode, so the content is
    never readable with looser permissions, not even for a moment.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have stripped bits we want
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the duration of the block.

    The lock belongs to the open file description, so it is released when the descriptor is
    closed, including when the process dies. In a directory this process cannot write (a
    CA mounted read-only) the existing lock file is locked through a read-only descriptor,
    and without one the block runs unlocked: nothing can be created or replaced there
    anyway, and ``write_atomic`` lets readers see whole files only.
    """
    try:
        fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as exc:
        if not is_read_only_error(exc):
            raise
        fd = _open_existing(path)
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_existing(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
