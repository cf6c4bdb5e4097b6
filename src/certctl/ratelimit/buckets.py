"""Token buckets per key, in memory, with an injectable clock.

Each key owns a bucket of ``burst`` tokens that refills at ``rate`` tokens per second; a
request takes one token or is refused with the time until one is back. Memory is bounded:
past ``max_keys`` the least recently used bucket is forgotten. Forgetting a bucket is the
same as refilling it, so the bound only ever errs towards letting a request through.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 100_000
# IPv6 hosts get whole /64s (RFC 4291 §2.5.1 interface identifiers), so one host could
# otherwise rotate through 2**64 keys; its /64 is the unit an address plan hands out.
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``, or else ``retry_after`` seconds until the key has a token again."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` delay-seconds (RFC 9110 §10.2.3): a whole number, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """``rate`` tokens per second, at most ``burst`` in the bucket. Thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError("rate must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def acquire(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket if there is one."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            elif now > bucket.updated:  # a clock that stands still or steps back adds nothing
                refill = (now - bucket.updated) * self.rate
                bucket.tokens = min(float(self.burst), bucket.tokens + refill)
                bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(True)
            return Decision(False, (1.0 - bucket.tokens) / self.rate)


def client_key(address: str) -> str:
    """The bucket key for a client address: IPv4 as is, IPv6 by its /64, anything else
    (a Unix socket peer, a name) verbatim."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
