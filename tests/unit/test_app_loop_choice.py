"""Where the POSTs of an issuance run (certctl.app.issuance_on_the_loop): on the event loop
only when nothing they wait on is slow, and never when a COMMIT would block the loop on an
fsync (SQLite FULL without group commit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certctl.app import issuance_on_the_loop
from certctl.config import Settings, load_settings
from certctl.storage.db import Database


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"CERTCTL_DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("synchronous", "group_commit", "redis", "expected"),
    [
        ("FULL", True, "", True),  # one worker: the sync is off the loop, the answer waits
        ("FULL", False, "", False),  # no group commit (a CLI store): every COMMIT fsyncs
        ("NORMAL", False, "", True),  # no sync at all
        ("FULL", True, "redis://127.0.0.1:6379/0", False),  # rate limits a round trip away
    ],
)
def test_issuance_runs_on_the_loop_only_where_nothing_blocks_it(
    tmp_path: Path, synchronous: str, group_commit: bool, redis: str, expected: bool
) -> None:
    db = Database(
        f"sqlite+pysqlite:///{tmp_path / 'c.db'}",
        synchronous=synchronous,
        group_commit=group_commit,
    )
    env = {"CERTCTL_REDIS_URL": redis} if redis else {}
    try:
        assert issuance_on_the_loop(db, _settings(tmp_path, **env)) is expected
    finally:
        db.dispose()


def test_postgresql_never_answers_on_the_loop(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:5432/test", group_commit=True)
    try:
        assert db.syncer is None  # group commit is SQLite's
        assert not issuance_on_the_loop(db, _settings(tmp_path))
    finally:
        db.dispose()
