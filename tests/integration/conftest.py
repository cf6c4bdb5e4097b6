"""Fixtures for the integration tests: one served instance per module and database.

Starting ``certctl serve`` costs about a second, so ``database_url`` is overridden here
with module scope (same parameters as the suite-wide fixture: embedded SQLite and a fresh
PostgreSQL database) and each module shares one server per database. Tests therefore
never depend on each other's state: every test registers its own accounts.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.integration.servers import STARTED, serve
from tests.integration.wire import Wire
from tests.support.gating import require_or_skip
from tests.support.postgres import POSTGRES_URL_ENV, fresh_database, unavailable_reason
from tests.support.server import ServedCertctl


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the log tail of every server its module started."""
    report = yield
    if report.failed:
        module = item.getparent(pytest.Module)
        for server in module.stash.get(STARTED, []) if module is not None else []:
            report.sections.append((f"certctl log ({server.base_url})", server.log_tail()))
    return report


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Module-scoped: None (SQLite in the data dir) or a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        yield None
        return
    reason = unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {POSTGRES_URL_ENV})")
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    """The module's default instance (default profile, trust_authenticated)."""
    with serve(request, tmp_path_factory, database_url) as server:
        yield server


@pytest.fixture(scope="module")
def wire(served: ServedCertctl) -> Iterator[Wire]:
    """A raw client for the default profile's directory of ``served``."""
    client = Wire(served)
    yield client
    client.close()
