"""The ACME handler pool: small by default, by database, and as configured."""

from __future__ import annotations

import pytest

from certctl.config import load_settings
from certctl.wfe.routes import (
    POSTGRES_HANDLER_THREADS,
    SQLITE_HANDLER_THREADS,
    AcmeApp,
    WfeState,
    handler_threads,
)


def test_defaults_by_database() -> None:
    assert handler_threads(0, sqlite=True) == SQLITE_HANDLER_THREADS
    assert handler_threads(0, sqlite=False) == POSTGRES_HANDLER_THREADS
    # Both leave room in the database pool (10 + 10 overflow) for the other users of it.
    assert SQLITE_HANDLER_THREADS < POSTGRES_HANDLER_THREADS <= 10


@pytest.mark.parametrize("sqlite", [True, False])
def test_the_setting_wins(sqlite: bool) -> None:
    settings = load_settings({"CERTCTL_ACME_SERVER_HANDLER_THREADS": "3"})
    assert handler_threads(settings.acme.handler_threads, sqlite=sqlite) == 3


def test_the_pool_has_that_many_threads() -> None:
    settings = load_settings({})
    app = AcmeApp(WfeState(None, settings.acme, None, threads=3))  # type: ignore[arg-type]
    try:
        assert app._threads._max_workers == 3
    finally:
        app.close()
