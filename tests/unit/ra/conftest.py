"""RA tests use the storage tests' real databases (a SQLite file and PostgreSQL)."""

from tests.unit.storage.conftest import db, store_url

__all__ = ["db", "store_url"]
