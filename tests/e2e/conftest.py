"""Client fixtures for the e2e tests, resolved before any server is started."""

from __future__ import annotations

import pytest

from tests.support.clients import certbot_executable, lego_executable


@pytest.fixture
def certbot_bin() -> str:
    """Path of certbot; skips (fails under CERTCTL_TEST_REQUIRE_ALL=1) when missing."""
    return certbot_executable()


@pytest.fixture
def lego_bin() -> str:
    """Path of lego; skips (fails under CERTCTL_TEST_REQUIRE_ALL=1) when missing."""
    return lego_executable()
