"""Throwaway PostgreSQL databases for tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

POSTGRES_URL_ENV = "CERTCTL_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_S = 5


class PostgresUnavailableError(Exception):
    """The admin server named by CERTCTL_TEST_POSTGRES_URL could not be reached."""


def admin_url() -> URL:
    """SQLAlchemy URL of the server used to create test databases."""
    return make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)


def libpq_conninfo(url: URL) -> str:
    """Turn a SQLAlchemy URL (``postgresql+psycopg://...``) into a libpq URI."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _connect(url: URL) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(
            libpq_conninfo(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shown = url.render_as_string(hide_password=True)
        raise PostgresUnavailableError(f"PostgreSQL at {shown} unreachable: {first_line}") from exc


def unavailable_reason() -> str | None:
    """None when the admin server accepts a connection, else a one-line reason."""
    try:
        with _connect(admin_url()) as conn:
            conn.execute("SELECT 1")
    except PostgresUnavailableError as exc:
        return str(exc)
    return None


@contextmanager
def fresh_database(prefix: str = "certctl_test") -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    admin = admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with _connect(admin) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
