"""Server secrets: the first writer wins and every caller gets the same value."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from certctl.storage import secrets
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW

THREADS = 8


def test_get_or_create_keeps_the_first_value(db: Database) -> None:
    with db.write() as conn:
        first = secrets.get_or_create(conn, "k", lambda: b"first", NOW)
    with db.write() as conn:
        second = secrets.get_or_create(conn, "k", lambda: b"second", NOW)
        other = secrets.get_or_create(conn, "other", lambda: b"\x00\xff", NOW)
    assert first == second == b"first"
    assert other == b"\x00\xff"


def test_concurrent_callers_all_get_the_same_value(db: Database) -> None:
    barrier = threading.Barrier(THREADS)
    offered: list[bytes] = []
    lock = threading.Lock()

    def factory() -> bytes:
        value = os.urandom(32)
        with lock:
            offered.append(value)
        return value

    def attempt(_: int) -> bytes:
        barrier.wait(timeout=30)
        with db.write() as conn:
            return secrets.get_or_create(conn, "nonce-key", factory, NOW)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(attempt, range(THREADS)))
    assert len(set(results)) == 1
    assert results[0] in offered
    assert len(results[0]) == 32
