from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from certctl.revocation import OCSPCache

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
VALIDITY = timedelta(hours=12)


def _put(cache: OCSPCache, serial: int, der: bytes = b"resp", version: int | None = None) -> bool:
    return cache.put(
        "iss-1", serial, der, this_update=T0, next_update=T0 + VALIDITY, version=version
    )


def test_fresh_until_half_the_validity() -> None:
    cache = OCSPCache()
    assert _put(cache, 1)
    assert cache.get("iss-1", 1, T0) == b"resp"
    assert cache.get("iss-1", 1, T0 + VALIDITY / 2 - timedelta(seconds=1)) == b"resp"
    assert cache.get("iss-1", 1, T0 + VALIDITY / 2) is None  # time to re-sign
    assert len(cache) == 0  # and the stale entry is gone


def test_not_yet_valid_is_a_miss_but_kept() -> None:
    cache = OCSPCache()
    _put(cache, 1)
    assert cache.get("iss-1", 1, T0 - timedelta(seconds=1)) is None
    assert cache.get("iss-1", 1, T0) == b"resp"


def test_keyed_by_issuer_and_serial() -> None:
    cache = OCSPCache()
    _put(cache, 1, b"one")
    cache.put("iss-2", 1, b"other", this_update=T0, next_update=T0 + VALIDITY)
    assert cache.get("iss-1", 1, T0) == b"one"
    assert cache.get("iss-2", 1, T0) == b"other"
    assert cache.get("iss-1", 2, T0) is None


def test_invalidate_forgets_the_response() -> None:
    cache = OCSPCache()
    _put(cache, 1)
    cache.invalidate("iss-1", 1)
    assert cache.get("iss-1", 1, T0) is None
    cache.invalidate("iss-1", 99)  # nothing cached: fine


def test_a_put_overtaken_by_a_revocation_is_dropped() -> None:
    cache = OCSPCache()
    version = cache.version("iss-1", 1)  # the pre-signer reads the version, then "good"...
    cache.invalidate("iss-1", 1)  # ...the certificate is revoked meanwhile...
    assert not _put(cache, 1, b"stale good", version=version)  # ...its answer is dropped
    assert cache.get("iss-1", 1, T0) is None
    fresh = cache.version("iss-1", 1)
    assert _put(cache, 1, b"revoked", version=fresh)
    assert cache.get("iss-1", 1, T0) == b"revoked"


def test_other_serials_are_not_held_up_by_an_invalidation() -> None:
    cache = OCSPCache()
    version = cache.version("iss-1", 1)
    cache.invalidate("iss-1", 2)
    assert _put(cache, 1, version=version)


def test_forgotten_invalidations_still_refuse_older_puts() -> None:
    cache = OCSPCache(max_entries=1)
    version = cache.version("iss-1", 1)
    cache.invalidate("iss-1", 1)
    cache.invalidate("iss-1", 2)  # pushes serial 1's invalidation out of the bounded record
    assert not _put(cache, 1, version=version)  # refused all the same
    assert _put(cache, 1, version=cache.version("iss-1", 1))


def test_least_recently_used_goes_first() -> None:
    cache = OCSPCache(max_entries=2)
    _put(cache, 1, b"one")
    _put(cache, 2, b"two")
    assert cache.get("iss-1", 1, T0) == b"one"  # 2 is now the least recently used
    _put(cache, 3, b"three")
    assert len(cache) == 2
    assert cache.get("iss-1", 2, T0) is None
    assert cache.get("iss-1", 1, T0) == b"one"
    cache.clear()
    assert len(cache) == 0


def test_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        OCSPCache(max_entries=0)
    with pytest.raises(ValueError, match="after this_update"):
        OCSPCache().put("iss-1", 1, b"x", this_update=T0, next_update=T0)


def test_concurrent_use() -> None:
    cache = OCSPCache(max_entries=50)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(2000):
                serial = (worker * 7 + i) % 100
                version = cache.version("iss-1", serial)
                _put(cache, serial, f"{worker}-{i}".encode(), version=version)
                cache.get("iss-1", serial, T0)
                if i % 10 == 0:
                    cache.invalidate("iss-1", serial)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(cache) <= 50


def test_lookup_returns_the_status_given_to_put() -> None:
    cache = OCSPCache()
    cache.put("iss-1", 1, b"r1", this_update=T0, next_update=T0 + VALIDITY, status="revoked")
    cache.put("iss-1", 2, b"r2", this_update=T0, next_update=T0 + VALIDITY)
    assert cache.lookup("iss-1", 1, T0) == (b"r1", "revoked")
    assert cache.lookup("iss-1", 2, T0) == (b"r2", "")  # not told: the caller parses it
    assert cache.lookup("iss-1", 3, T0) is None
