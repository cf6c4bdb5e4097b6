"""Token buckets per client: burst, refill, Retry-After, bounded memory, client keys."""

from __future__ import annotations

import threading

import pytest

from certctl.ratelimit import Decision, TokenBucketLimiter, client_key


class Ticker:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def test_burst_then_refusal_with_the_wait() -> None:
    clock = Ticker()
    limiter = TokenBucketLimiter(2, 3, clock=clock)
    assert [limiter.acquire("a").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.acquire("a")
    assert refused == Decision(False, 0.5)  # 2 tokens/s: the next one in half a second
    assert refused.retry_after_header == "1"
    clock.value = 0.5
    assert limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed


def test_refill_is_capped_at_the_burst() -> None:
    clock = Ticker()
    limiter = TokenBucketLimiter(10, 2, clock=clock)
    limiter.acquire("a")
    clock.value = 3600.0
    assert [limiter.acquire("a").allowed for _ in range(3)] == [True, True, False]


def test_keys_are_independent() -> None:
    limiter = TokenBucketLimiter(1, 1, clock=Ticker())
    assert limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed


def test_a_clock_going_back_adds_nothing() -> None:
    clock = Ticker()
    clock.value = 10.0
    limiter = TokenBucketLimiter(1, 1, clock=clock)
    assert limiter.acquire("a").allowed
    clock.value = 5.0
    assert not limiter.acquire("a").allowed
    clock.value = 10.5
    assert not limiter.acquire("a").allowed
    clock.value = 11.0
    assert limiter.acquire("a").allowed


def test_memory_is_bounded_by_forgetting_the_least_recent() -> None:
    limiter = TokenBucketLimiter(1, 1, clock=Ticker(), max_keys=2)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key).allowed
    assert len(limiter) == 2
    assert not limiter.acquire("c").allowed  # still known
    assert limiter.acquire("a").allowed  # forgotten: a full bucket again


def test_retry_after_header_rounds_up() -> None:
    assert Decision(False, 0.01).retry_after_header == "1"
    assert Decision(False, 2.2).retry_after_header == "3"


def test_threads_never_get_more_than_the_burst() -> None:
    limiter = TokenBucketLimiter(1, 100, clock=Ticker())
    allowed: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(50):
            decision = limiter.acquire("a")
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 100


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [(0, 1, 1), (-1, 1, 1), (float("inf"), 1, 1), (1, 0, 1), (1, 1, 0)],
)
def test_bad_parameters(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate, burst, max_keys=max_keys)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
        ("", ""),
    ],
)
def test_client_key(address: str, key: str) -> None:
    assert client_key(address) == key
