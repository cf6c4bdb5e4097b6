"""GCRA: N per window, in memory and in a real Redis; both give the same answers."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from certctl.ratelimit import LimitStore, MemoryGcraStore, RedisGcraStore, StoreUnavailableError
from certctl.ratelimit.gcra import REDIS_PREFIX, gcra_step, interval_us
from tests.support import redis as redis_support
from tests.support.ports import free_port

HOUR = 3600.0
T0 = 1_900_000_000.25  # wall-clock seconds (2030), with a fraction


def allowed(store: LimitStore, key: str, limit: int, times: int, now: float = T0) -> int:
    return sum(store.check(key, limit, HOUR, now).allowed for _ in range(times))


def test_the_burst_is_exactly_the_limit(store: LimitStore) -> None:
    assert allowed(store, "a", 5, 5) == 5
    refused = store.check("a", 5, HOUR, T0)
    assert not refused.allowed
    # The next one fits one emission interval (W/N) later, and says so.
    assert refused.retry_after == pytest.approx(HOUR / 5)
    assert refused.retry_after_header == "720"


@pytest.mark.parametrize("limit", [1, 3, 7, 60, 100, 999])
def test_awkward_intervals_still_allow_exactly_n(store: LimitStore, limit: int) -> None:
    # 3600/7 is not a whole number of microseconds: N of them must still fit in W.
    key = f"n{limit}"
    assert allowed(store, key, limit, limit + 3) == limit


def test_one_more_fits_per_interval_after_the_burst(store: LimitStore) -> None:
    allowed(store, "b", 4, 4)
    step = HOUR / 4
    assert not store.check("b", 4, HOUR, T0 + step - 1).allowed
    assert store.check("b", 4, HOUR, T0 + step).allowed
    assert not store.check("b", 4, HOUR, T0 + step).allowed
    # A quiet window refills the whole burst, and no more.
    later = T0 + 10 * HOUR
    assert allowed(store, "b", 4, 6, later) == 4


def test_retry_after_counts_down(store: LimitStore) -> None:
    allowed(store, "c", 2, 2)
    assert store.check("c", 2, HOUR, T0 + 100).retry_after == pytest.approx(1700)
    assert store.check("c", 2, HOUR, T0 + 1799.5).retry_after == pytest.approx(0.5)
    assert store.check("c", 2, HOUR, T0 + 1799.5).retry_after_header == "1"


def test_refusals_cost_nothing(store: LimitStore) -> None:
    allowed(store, "d", 2, 2)
    for _ in range(50):
        assert not store.check("d", 2, HOUR, T0 + 10).allowed
    assert store.check("d", 2, HOUR, T0 + HOUR / 2).allowed


def test_keys_are_independent(store: LimitStore) -> None:
    assert allowed(store, "e1", 1, 3) == 1
    assert allowed(store, "e2", 1, 3) == 1


def test_zero_or_negative_is_no_limit(store: LimitStore) -> None:
    assert allowed(store, "f", 0, 50) == 50
    assert allowed(store, "f", -1, 5) == 5


def test_a_changed_limit_applies_to_the_same_key(store: LimitStore) -> None:
    # The key's TAT is time, not a count: after a full burst at 2/h, a raised limit of
    # 10/h lets the next request through one new interval (360 s) later, not two hours.
    assert allowed(store, "g", 2, 5) == 2
    refused = store.check("g", 10, HOUR, T0)
    assert not refused.allowed and refused.retry_after == pytest.approx(360)
    assert allowed(store, "g", 10, 3, T0 + 360) == 1
    # Lowered, what was used counts in time: 3 of 10/h used 0.3 h, so 2/h (1800 s
    # each) has room for one more now, and then none.
    assert allowed(store, "g2", 10, 3) == 3
    assert allowed(store, "g2", 2, 3) == 1


def test_a_clock_step_back_adds_nothing(store: LimitStore) -> None:
    allowed(store, "h", 2, 2)
    assert not store.check("h", 2, HOUR, T0 - 500).allowed


def test_short_windows(store: LimitStore) -> None:
    assert sum(store.check("i", 3, 1.0, T0).allowed for _ in range(5)) == 3
    assert store.check("i", 3, 1.0, T0 + 1 / 3).allowed


@pytest.mark.parametrize("limit", [1, 50, 400])
def test_concurrent_checks_allow_exactly_the_limit(store: LimitStore, limit: int) -> None:
    threads, per_thread = 16, 50
    start = threading.Barrier(threads)

    def worker(_: int) -> int:
        start.wait()
        return allowed(store, "conc", limit, per_thread)

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(worker, range(threads)))
    assert total == min(limit, threads * per_thread)


def test_python_and_lua_agree(redis_store: RedisGcraStore) -> None:
    memory = MemoryGcraStore()
    rng = random.Random(8555)
    now = T0
    for _ in range(400):
        now += rng.choice([0.0, 0.001, 0.5, 7.0, 300.0, 1234.567])
        key, limit = rng.choice(["p", "q"]), rng.choice([1, 3, 7, 60])
        a = memory.check(key, limit, HOUR, now)
        b = redis_store.check(key, limit, HOUR, now)
        assert a.allowed == b.allowed
        assert a.retry_after == pytest.approx(b.retry_after, abs=1e-6)


# -- the pure step and the memory store's bound -------------------------------------------


def test_step_in_microseconds() -> None:
    t, w = interval_us(7, HOUR), int(HOUR * 1_000_000)
    assert t * 7 <= w < t * 8
    tat: int | None = None
    for _ in range(7):
        ok, value = gcra_step(tat, 10, t, w)
        assert ok
        tat = value
    ok, wait = gcra_step(tat, 10, t, w)
    assert not ok and wait == 8 * t - w
    assert interval_us(10**9, 1.0) == 1  # never a zero interval


def test_memory_is_bounded_and_forgetting_only_allows_more() -> None:
    store = MemoryGcraStore(max_keys=3)
    for key in "abcd":
        assert store.check(key, 1, HOUR, T0).allowed
    assert len(store) == 3
    assert store.check("a", 1, HOUR, T0).allowed  # forgotten: a fresh allowance
    assert not store.check("d", 1, HOUR, T0).allowed  # remembered
    with pytest.raises(ValueError):
        MemoryGcraStore(max_keys=0)


# -- Redis specifics -------------------------------------------------------------------------


def test_redis_keys_have_the_prefix_and_expire_within_the_window(redis_url: str) -> None:
    store = RedisGcraStore.from_url(redis_url)
    key = "test-" + redis_support.unique_prefix().split(":")[2]
    try:
        assert store.check(key, 10, HOUR, T0).allowed
        with redis_support.client(redis_url) as conn:
            ttl_ms = conn.pttl(REDIS_PREFIX + key)
            stored = conn.get(REDIS_PREFIX + key)
        # TAT = now + W/10: the key lives as long as it matters, never past the window.
        assert 0 < ttl_ms <= HOUR / 10 * 1000
        assert stored == str(round(T0 * 1_000_000) + interval_us(10, HOUR)).encode()
    finally:
        redis_support.delete_matching(REDIS_PREFIX + key, redis_url)
        store.close()


def test_redis_reloads_its_script_after_a_script_flush(
    redis_store: RedisGcraStore, redis_url: str
) -> None:
    assert redis_store.check("r", 2, HOUR, T0).allowed
    with redis_support.client(redis_url) as conn:
        conn.script_flush()  # a restarted Redis has forgotten every script
    assert redis_store.check("r", 2, HOUR, T0).allowed
    assert not redis_store.check("r", 2, HOUR, T0).allowed


def test_unreachable_redis_is_store_unavailable() -> None:
    store = RedisGcraStore.from_url(f"redis://127.0.0.1:{free_port('127.0.0.1')}/0")
    try:
        with pytest.raises(StoreUnavailableError, match="ConnectionError"):
            store.check("x", 1, HOUR, T0)
        assert store.check("x", 0, HOUR, T0).allowed  # no limit: Redis is never asked
    finally:
        store.close()
