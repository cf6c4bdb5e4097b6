"""Stores under test: in memory, and in a real Redis (database 15, keys under a prefix
unique to the test, deleted afterwards). Without Redis the Redis cases skip locally and
fail in CI (CERTCTL_TEST_REQUIRE_ALL=1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from certctl.ratelimit import LimitStore, MemoryGcraStore, RedisGcraStore
from tests.support import redis as redis_support
from tests.support.gating import require_or_skip


@pytest.fixture
def redis_url() -> str:
    reason = redis_support.unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {redis_support.REDIS_URL_ENV})")
    return redis_support.redis_url()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = redis_support.unique_prefix()
    yield prefix
    redis_support.delete_matching(prefix + "*", redis_url)


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisGcraStore]:
    store = RedisGcraStore(redis_support.client(redis_url), prefix=redis_prefix)
    yield store
    store.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> LimitStore:
    if request.param == "redis":
        found: LimitStore = request.getfixturevalue("redis_store")
        return found
    return MemoryGcraStore()
