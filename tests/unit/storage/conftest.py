"""Every storage test runs against a real SQLite file and against PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certctl.storage.db import Database


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+pysqlite:///{tmp_path / 'certctl.db'}"


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    """A migrated store; its pool is closed afterwards."""
    database = Database(store_url)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()
