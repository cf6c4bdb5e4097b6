"""Redis down: answers come from the process's own store, one warning per outage, and the
shared store is tried again after the back-off."""

from __future__ import annotations

import logging

import pytest

from certctl.ratelimit import (
    Decision,
    FailoverStore,
    MemoryGcraStore,
    RedisGcraStore,
    StoreUnavailableError,
)
from tests.support.ports import free_port

HOUR = 3600.0
T0 = 1_900_000_000.0


class FlakyStore:
    """A shared store that is down while ``down`` is set; counts its calls."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.inner = MemoryGcraStore()

    def check(self, key: str, limit: int, window_s: float, now: float) -> Decision:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("redis: ConnectionError: refused")
        return self.inner.check(key, limit, window_s, now)


def degraded(store: FailoverStore) -> bool:
    return store.degraded  # a call: mypy would narrow the property across asserts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts() -> tuple[FlakyStore, MemoryGcraStore, Clock, list[int], FailoverStore]:
    shared, local, clock, errors = FlakyStore(), MemoryGcraStore(), Clock(), [0]

    def count() -> None:
        errors[0] += 1

    store = FailoverStore(shared, local, retry_s=5.0, on_error=count, clock=clock)
    return shared, local, clock, errors, store


def test_healthy_uses_only_the_shared_store(
    parts: tuple[FlakyStore, MemoryGcraStore, Clock, list[int], FailoverStore],
) -> None:
    shared, local, _, errors, store = parts
    assert [store.check("k", 2, HOUR, T0).allowed for _ in range(3)] == [True, True, False]
    assert shared.calls == 3 and len(local) == 0 and errors == [0]
    assert not degraded(store)


def test_an_outage_fails_open_to_local_limits_and_warns_once(
    parts: tuple[FlakyStore, MemoryGcraStore, Clock, list[int], FailoverStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared, _, clock, errors, store = parts
    shared.down = True
    with caplog.at_level(logging.INFO, logger="certctl.ratelimit.failover"):
        # Still limited: the local store counts, so the third request is refused.
        assert [store.check("k", 2, HOUR, T0).allowed for _ in range(3)] == [True, True, False]
        assert degraded(store)
        # Within the back-off Redis is not asked again.
        assert shared.calls == 1 and errors == [1]
        clock.now += 5.0  # retry: still down; counted, but no second warning
        assert not store.check("k", 2, HOUR, T0).allowed
        assert shared.calls == 2 and errors == [2]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()
        assert "ConnectionError" in warnings[0].getMessage()
        # Back: the shared store answers again (its own count), and says so once.
        shared.down = False
        clock.now += 5.0
        assert store.check("k", 2, HOUR, T0).allowed
        assert not degraded(store)
        assert any("back" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    # A second outage warns again.
    shared.down = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="certctl.ratelimit.failover"):
        store.check("z", 2, HOUR, T0)
    assert len(caplog.records) == 1


def test_a_real_unreachable_redis_still_limits_locally() -> None:
    port = free_port("127.0.0.1")  # nothing listens there
    shared = RedisGcraStore.from_url(f"redis://127.0.0.1:{port}/0")
    errors: list[int] = []
    store = FailoverStore(shared, MemoryGcraStore(), on_error=lambda: errors.append(1))
    try:
        decisions = [store.check("acct", 3, HOUR, T0) for _ in range(4)]
    finally:
        shared.close()
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == pytest.approx(HOUR / 3)
    assert errors == [1]
