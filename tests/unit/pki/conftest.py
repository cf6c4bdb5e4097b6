"""A real CA in a tmp data dir, a migrated store (SQLite file, PostgreSQL), fake clocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certctl.storage.db import Database
from tests.unit.pki.support import World, make_world
from tests.unit.storage.conftest import db, store_url

__all__ = ["db", "store_url"]


@pytest.fixture
def world(tmp_path: Path, db: Database) -> Iterator[World]:
    """The CA of ``tmp_path/data``, its issuer row and profile, clocks at real time."""
    yield make_world(tmp_path / "data", db)
