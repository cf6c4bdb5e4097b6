"""Start-up migrations: idempotent, serialised across processes, exactly the schema."""

from __future__ import annotations

import fcntl
import multiprocessing
import queue
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

import certctl.storage
from certctl.storage import nonces
from certctl.storage.db import Database
from certctl.storage.schema import UTCDateTime, metadata
from tests.unit.storage.helpers import NOW, migrate_worker

PROCESSES = 4
MIGRATIONS = Path(certctl.storage.__file__).parent / "migrations"


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def assert_one_schema_at_head(url: str) -> None:
    db = Database(url)
    try:
        with db.read() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = set(inspect(conn).get_table_names())
        assert [v for (v,) in versions] == [head_revision()]
        assert tables == set(metadata.tables) | {"alembic_version"}
    finally:
        db.dispose()


def test_migrate_twice_is_idempotent(store_url: str) -> None:
    db = Database(store_url)
    try:
        db.migrate()
        db.migrate()
    finally:
        db.dispose()
    assert_one_schema_at_head(store_url)
    # A second handle (a restarted server) migrates again without change.
    again = Database(store_url)
    try:
        again.migrate()
    finally:
        again.dispose()
    assert_one_schema_at_head(store_url)


def test_migrations_create_exactly_the_declared_tables(db: Database) -> None:
    with db.read() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        assert compare_metadata(context, metadata) == []


def test_concurrent_migrations_from_several_processes(store_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=migrate_worker, args=(store_url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[str] = []
    deadline = time.monotonic() + 120
    while len(outcomes) < PROCESSES and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert outcomes == ["ok"] * PROCESSES
    assert_one_schema_at_head(store_url)


def test_a_failed_migration_reports_its_error_and_releases_the_lock(store_url: str) -> None:
    db = Database(store_url)
    try:
        with db.write() as conn:  # a stray table in the way of the first migration
            conn.execute(text("CREATE TABLE acme_used_nonces (x integer)"))
        with pytest.raises(DBAPIError, match="already exists"):
            db.migrate()
        if db.is_sqlite:
            lock_path = f"{make_url(store_url).database}.migrate.lock"
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
        else:
            with db.read() as conn:
                # pg_locks is cluster-wide: other tests' databases hold advisory locks
                # of their own (migrations, the GC sweep) while this one runs.
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database"
                        " = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).scalar_one()
            assert held == 0
    finally:
        db.dispose()


def _alembic(conn: Connection, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, revision)
    conn.commit()


def _spend_raw(conn: Connection, nonce: str, expires_at: str) -> None:
    conn.execute(
        text("INSERT INTO acme_used_nonces (nonce, expires_at) VALUES (:n, :e)"),
        {"n": nonce, "e": expires_at},
    )


def test_used_nonces_keep_their_single_use_across_the_0005_upgrade_and_back(
    store_url: str,
) -> None:
    """0005 rebuilds the used-nonce table around one key, (expires_at, nonce): a nonce
    spent before the upgrade (and not yet expired) must stay spent after it (RFC 8555
    §6.5), and the key must be the only structure the table has."""
    expiry = NOW + timedelta(minutes=5)
    db = Database(store_url)
    try:
        with db.engine.connect() as conn:
            _alembic(conn, "upgrade", "0004")
            _spend_raw(conn, "spent-before-0005", str(_stored(conn, expiry)))
            conn.commit()
            _alembic(conn, "upgrade", "0005")
            schema = inspect(conn)
            assert schema.get_pk_constraint("acme_used_nonces")["constrained_columns"] == [
                "expires_at",
                "nonce",
            ]
            assert schema.get_indexes("acme_used_nonces") == []
            if db.is_sqlite:
                create = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'acme_used_nonces'")
                ).scalar_one()
                assert "WITHOUT ROWID" in create
        with db.write() as conn:
            assert nonces.consume(conn, "spent-before-0005", expiry) is False
            assert nonces.consume(conn, "spent-after-0005", expiry) is True
        with db.engine.connect() as conn:
            _alembic(conn, "downgrade", "0004")
            assert inspect(conn).get_pk_constraint("acme_used_nonces")["constrained_columns"] == [
                "nonce"
            ]
            kept = conn.execute(text("SELECT nonce FROM acme_used_nonces ORDER BY nonce"))
            assert [n for (n,) in kept] == ["spent-after-0005", "spent-before-0005"]
    finally:
        db.dispose()


def _stored(conn: Connection, moment: datetime) -> object:
    """``moment`` as the column type stores it on this dialect (text on SQLite)."""
    bind = UTCDateTime().bind_processor(conn.dialect)
    return bind(moment) if bind is not None else moment
