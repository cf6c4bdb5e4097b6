"""Fixtures of the fleet tests: 3 replicas on a fresh PostgreSQL database behind haproxy.

PostgreSQL and haproxy are required: a test skips locally without them and fails in CI
(CERTCTL_TEST_REQUIRE_ALL=1). A failing test's report carries the log tails of haproxy and
every replica; the timings the tests record (``record_property("fleet_...")``) are
printed in the terminal summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, haproxy_executable
from tests.support.gating import require_or_skip
from tests.support.postgres import POSTGRES_URL_ENV, fresh_database, unavailable_reason

# The survivors sweep (and reconcile) every second instead of every minute. The load's
# clients keep their accounts, and a fast fleet passes the default 100 new orders per
# account per hour within a test's run: no fleet test is about rate limits.
FLEET_ENV = {
    "CERTCTL_ACME_SERVER_GC_INTERVAL": "1s",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_ORDERS_PER_HOUR": "0",
}
TIMING_PREFIX = "fleet_"

_FLEETS = pytest.StashKey[list[Fleet]]()


def track(request: pytest.FixtureRequest, fleet: Fleet) -> None:
    """Show ``fleet``'s logs with the report if the test fails."""
    request.node.stash.setdefault(_FLEETS, []).append(fleet)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for fleet in item.stash.get(_FLEETS, []):
            report.sections.append((f"fleet logs ({fleet.base_url})", fleet.diagnostics()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if isinstance(name, str) and name.startswith(TIMING_PREFIX):
                lines.append(f"{report.nodeid}: {name[len(TIMING_PREFIX) :]} = {value}")
    if lines:
        terminalreporter.write_sep("-", "fleet timings")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    return haproxy_executable()


def fleet_database() -> contextlib.AbstractContextManager[str]:
    """A fresh database on CERTCTL_TEST_POSTGRES_URL's server (skip or fail without)."""
    reason = unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {POSTGRES_URL_ENV})")
    return fresh_database("certctl_fleet")


@pytest.fixture
def fleet(tmp_path: Path, haproxy_bin: str, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Three replicas on a fresh database, sharing one data directory, behind haproxy:
    the test's own, for tests that kill, drain or otherwise change the fleet."""
    with fleet_database() as url, Fleet(tmp_path / "fleet", url, env=FLEET_ENV) as running:
        track(request, running)
        yield running


@pytest.fixture(scope="module")
def _module_fleet(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Fleet]:
    with (
        fleet_database() as url,
        Fleet(tmp_path_factory.mktemp("fleet"), url, env=FLEET_ENV) as running,
    ):
        yield running


@pytest.fixture
def shared_fleet(_module_fleet: Fleet, request: pytest.FixtureRequest) -> Fleet:
    """Like ``fleet``, but one per module, for tests that leave the fleet as it was."""
    track(request, _module_fleet)
    return _module_fleet
