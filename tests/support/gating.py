"""Skip-or-fail gating for tests that need an external client or service.

Locally, a test whose client binary or service is missing is skipped with a one-line
reason. In CI (``CERTCTL_TEST_REQUIRE_ALL=1``) the same condition fails the test, so a
missing install step can never turn into a silently green run.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL_ENV = "CERTCTL_TEST_REQUIRE_ALL"


def require_all() -> bool:
    """True when every client and service is mandatory (CI)."""
    return os.environ.get(REQUIRE_ALL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def require_or_skip(condition: bool, reason: str) -> None:
    """Return when ``condition`` holds; otherwise skip, or fail under REQUIRE_ALL."""
    if condition:
        return
    line = " ".join(reason.split())
    if require_all():
        pytest.fail(f"{line} ({REQUIRE_ALL_ENV}=1)", pytrace=False)
    pytest.skip(line)


def require_executable(name: str, hint: str) -> str:
    """Resolve ``name`` on PATH or skip/fail with ``hint`` (how to install it)."""
    path = shutil.which(name)
    require_or_skip(path is not None, f"{name} not found on PATH ({hint})")
    assert path is not None
    return path
