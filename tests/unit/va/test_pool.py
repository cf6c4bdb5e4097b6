"""The bounded per-type pools: caps, isolation, time bounds, draining, thread safety."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from certctl.domain.errors import ProblemType
from certctl.va import ValidationAuthority, ValidationResult, VASettings, dns01_digest
from tests.unit.va.helpers import (
    KEY_AUTH,
    FakeResolver,
    TcpServer,
    async_test,
    request,
    silent,
)

RECORD = "_acme-challenge.pool.example"


@dataclass
class Collector:
    """Thread-safe callback target."""

    expected: int
    results: list[ValidationResult] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, result: ValidationResult) -> None:
        with self.lock:
            self.results.append(result)
            self.threads.add(threading.current_thread().name)
            if len(self.results) >= self.expected:
                self.done.set()


class GatedResolver(FakeResolver):
    """TXT lookups wait until ``gate`` opens (set from the test thread)."""

    def __init__(self) -> None:
        super().__init__(
            addresses={"metadata.example": [["169.254.169.254"]]},
            txt_records={RECORD: [dns01_digest(KEY_AUTH)]},
        )
        self.gate = threading.Event()

    async def txt(self, name: str) -> list[str]:
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().txt(name)


def test_cap_is_respected_under_three_times_the_load() -> None:
    resolver = FakeResolver(txt_records={RECORD: [dns01_digest(KEY_AUTH)]}, delay=0.05)
    va = ValidationAuthority(VASettings(dns01_concurrency=3), resolver=resolver)
    collector = Collector(expected=9)
    assert all(va.submit(request("dns-01", "pool.example"), collector) for _ in range(9))
    assert collector.done.wait(5)
    assert va.close(timeout=5)
    assert len(collector.results) == 9 and all(r.valid for r in collector.results)
    stats = va.stats
    assert stats.peak_in_flight["dns-01"] == 3
    assert stats.in_flight["dns-01"] == 0 and stats.outstanding == 0
    # Callbacks run in worker threads, never on the VA's event loop thread.
    assert all(name.startswith("certctl-va-callback") for name in collector.threads)


def test_submit_from_many_threads() -> None:
    resolver = FakeResolver(txt_records={RECORD: [dns01_digest(KEY_AUTH)]}, delay=0.01)
    va = ValidationAuthority(VASettings(dns01_concurrency=4), resolver=resolver)
    collector = Collector(expected=40)

    def submit_some() -> None:
        for _ in range(8):
            assert va.submit(request("dns-01", "pool.example"), collector)

    threads = [threading.Thread(target=submit_some) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert collector.done.wait(5)
    assert va.close()
    assert va.stats.peak_in_flight["dns-01"] <= 4


def test_a_saturated_type_does_not_block_another() -> None:
    resolver = GatedResolver()
    va = ValidationAuthority(VASettings(dns01_concurrency=2), resolver=resolver)
    dns_results = Collector(expected=4)
    for _ in range(4):
        va.submit(request("dns-01", "pool.example"), dns_results)
    http_result = Collector(expected=1)
    va.submit(request("http-01", "metadata.example"), http_result)
    try:
        assert http_result.done.wait(3), "http-01 waited behind dns-01"
        assert http_result.results[0].error is not None
        assert http_result.results[0].error.type is ProblemType.CONNECTION
        deadline = time.monotonic() + 2
        while va.stats.waiting["dns-01"] != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = va.stats
        assert stats.in_flight["dns-01"] == 2 and stats.waiting["dns-01"] == 2
        assert dns_results.results == []
    finally:
        resolver.gate.set()
    assert dns_results.done.wait(5)
    assert va.close()


@async_test
async def test_never_answering_targets_free_their_slot_at_the_timeout() -> None:
    resolver = FakeResolver.with_hosts(**{"slow.example": "127.0.0.1"})
    async with TcpServer(silent) as server:
        settings = VASettings(
            http_port=server.port, allow_loopback=True, timeout=0.3, http01_concurrency=1
        )
        va = ValidationAuthority(settings, resolver=resolver)
        collector = Collector(expected=3)
        started = time.monotonic()
        for _ in range(3):
            assert va.submit(request("http-01", "slow.example"), collector)
        assert await va.drain(timeout=5)
        elapsed = time.monotonic() - started
    assert len(collector.results) == 3
    for result in collector.results:
        assert result.error is not None and result.error.type is ProblemType.CONNECTION
    assert 0.8 < elapsed < 3  # three 0.3 s slots, one after another
    assert va.stats.peak_in_flight["http-01"] == 1 and va.stats.in_flight["http-01"] == 0


@async_test
async def test_drain_finishes_work_then_refuses_new_work() -> None:
    resolver = FakeResolver(txt_records={RECORD: [dns01_digest(KEY_AUTH)]}, delay=0.05)
    va = ValidationAuthority(VASettings(dns01_concurrency=2), resolver=resolver)
    collector = Collector(expected=6)
    for _ in range(6):
        va.submit(request("dns-01", "pool.example"), collector)
    assert await va.drain(timeout=5)
    assert len(collector.results) == 6
    assert not va.submit(request("dns-01", "pool.example"), collector)
    assert await va.drain(timeout=1)  # idempotent
    assert va.close()


@async_test
async def test_drain_timeout_cancels_what_is_left() -> None:
    resolver = GatedResolver()
    va = ValidationAuthority(VASettings(dns01_concurrency=1), resolver=resolver)
    collector = Collector(expected=2)
    va.submit(request("dns-01", "pool.example"), collector)
    va.submit(request("dns-01", "pool.example"), collector)
    assert not await va.drain(timeout=0.2)
    assert collector.results == []  # cancelled validations do not call back
    resolver.gate.set()


def test_a_failing_callback_does_not_stop_the_pool() -> None:
    resolver = FakeResolver(txt_records={RECORD: [dns01_digest(KEY_AUTH)]})
    va = ValidationAuthority(VASettings(dns01_concurrency=1), resolver=resolver)

    def explode(result: ValidationResult) -> None:
        raise RuntimeError("database is down")

    va.submit(request("dns-01", "pool.example"), explode)
    collector = Collector(expected=1)
    va.submit(request("dns-01", "pool.example"), collector)
    assert collector.done.wait(5)
    assert va.close()


def test_unknown_type_is_delivered_as_malformed() -> None:
    va = ValidationAuthority(VASettings(), resolver=FakeResolver())
    collector = Collector(expected=1)
    assert va.submit(request("tls-sni-01", "pool.example"), collector)
    assert collector.done.wait(5)
    assert va.close()
    error = collector.results[0].error
    assert error is not None and error.type is ProblemType.MALFORMED


def test_close_without_any_work() -> None:
    va = ValidationAuthority(VASettings(), resolver=FakeResolver())
    assert va.close()
    assert not va.submit(request("dns-01", "pool.example"), Collector(expected=1))
