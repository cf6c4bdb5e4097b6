"""Nonce single use across connections (RFC 8555 §6.5): the primary key decides races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Connection, select, text

from certctl.storage import gc, nonces
from certctl.storage.db import Database
from certctl.storage.schema import used_nonces
from tests.unit.storage.helpers import NOW

THREADS = 20


def consume(db: Database, nonce: str, expires_at: datetime = NOW + timedelta(minutes=5)) -> bool:
    # A nonce carries its expiry (certctl.acme.nonce): every use of one names the same.
    with db.write() as conn:
        return nonces.consume(conn, nonce, expires_at)


def test_a_nonce_is_accepted_once(db: Database) -> None:
    assert consume(db, "nonce-a") is True
    assert consume(db, "nonce-a") is False
    assert consume(db, "nonce-a") is False
    assert consume(db, "nonce-b") is True


def test_a_rolled_back_use_does_not_spend_the_nonce(db: Database) -> None:
    class AbortError(Exception):
        pass

    try:
        with db.write() as conn:
            assert nonces.consume(conn, "nonce-r", NOW) is True
            raise AbortError
    except AbortError:
        pass
    assert consume(db, "nonce-r") is True


def test_racing_uses_of_one_nonce_let_exactly_one_win(db: Database) -> None:
    barrier = threading.Barrier(THREADS)

    def attempt(_: int) -> bool:
        barrier.wait(timeout=30)
        return consume(db, "contested-nonce")

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(attempt, range(THREADS)))
    assert results.count(True) == 1
    assert results.count(False) == THREADS - 1


def test_purge_removes_only_expired_rows(db: Database) -> None:
    with db.write() as conn:
        nonces.consume(conn, "old", NOW - timedelta(seconds=1))
        nonces.consume(conn, "edge", NOW)
        nonces.consume(conn, "new", NOW + timedelta(minutes=1))
    with db.write() as conn:
        assert nonces.purge_expired(conn, NOW) == 1
    # its row is gone (the HMAC expiry still refuses it)
    assert consume(db, "old", NOW - timedelta(seconds=1)) is True
    assert consume(db, "edge", NOW) is False
    assert consume(db, "new", NOW + timedelta(minutes=1)) is False


def _synchronous_commit(conn: Connection) -> str:
    return str(conn.execute(text("SHOW synchronous_commit")).scalar_one())


@pytest.mark.postgres
def test_a_lazy_spend_commits_without_waiting_for_the_wal_in_its_own_transaction_only(
    postgres_url: str,
) -> None:
    db = Database(postgres_url, pool_size=1)
    db.migrate()
    try:
        with db.write() as conn:
            assert nonces.consume(conn, "promised", NOW) is True
            assert _synchronous_commit(conn) == "on"
        with db.write(promised=False) as conn:
            assert nonces.consume(conn, "lazy", NOW, lazy=True) is True
            assert _synchronous_commit(conn) == "off"
        with db.write(promised=False) as conn:
            spent = nonces.consume_for_account(
                conn, "lazy-kid", NOW, account_id="none", profile_id="x", jwk_json="{}", lazy=True
            )
            assert spent is False  # no such account: nothing is written
        # The setting ends with its transaction: the connection, kept for the next
        # transaction of this thread, commits synchronously again (a promised write
        # must never inherit a lazy one's setting).
        with db.statement(promised=False) as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert nonces.consume(conn, "lazy-auto", NOW, lazy=True) is True
        with db.write() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
            assert _synchronous_commit(conn) == "on"
    finally:
        db.dispose()


def test_the_gc_purges_the_oldest_expired_nonces_up_to_its_limit(db: Database) -> None:
    """A batch is a prefix of the key (expires_at, nonce): exactly ``limit`` rows, the
    oldest first, ties within one second of expiry broken by the nonce, nothing live."""
    early, late = NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)
    spent = {"a": early, "b": late, "c": late, "d": late, "live": NOW + timedelta(minutes=5)}
    with db.write() as conn:
        for nonce, expires_at in spent.items():
            assert nonces.consume(conn, nonce, expires_at)

    def left() -> set[str]:
        with db.read() as conn:
            return {n for (n,) in conn.execute(select(used_nonces.c.nonce))}

    with db.write() as conn:
        assert gc.purge_nonces(conn, NOW, 0) == 0
        assert gc.purge_nonces(conn, NOW, 2) == 2
    assert left() == {"c", "d", "live"}
    with db.write() as conn:
        assert gc.purge_nonces(conn, NOW, 10) == 2
        assert gc.purge_nonces(conn, NOW, 10) == 0
    assert left() == {"live"}
