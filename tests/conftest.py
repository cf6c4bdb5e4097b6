"""Fixtures shared by the whole suite: databases and served certctl instances."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.gating import require_or_skip
from tests.support.postgres import POSTGRES_URL_ENV, fresh_database, unavailable_reason
from tests.support.server import ServedCertctl

# Servers a test is using, so that a failure report can carry their log tails.
_SERVERS = pytest.StashKey[list[ServedCertctl]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the server log tail of every served instance to a failed test's report."""
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"certctl server log ({server.base_url})", server.log_tail()))
    return report


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named database, dropped afterwards.

    The server is the one named by CERTCTL_TEST_POSTGRES_URL (default: local postgres,
    database test). Unreachable: skip, or fail when CERTCTL_TEST_REQUIRE_ALL=1.
    """
    reason = unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {POSTGRES_URL_ENV})")
    with fresh_database() as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (embedded SQLite in the data dir) or the URL of a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


@pytest.fixture
def served_certctl(
    tmp_path: Path, database_url: str | None, request: pytest.FixtureRequest
) -> Iterator[ServedCertctl]:
    """A running ``certctl serve`` on a free loopback port, stopped after the test.

    When the test fails, the tail of the server log is shown with its report.
    """
    with ServedCertctl(tmp_path / "certctl", database_url) as server:
        request.node.stash.setdefault(_SERVERS, []).append(server)
        yield server
