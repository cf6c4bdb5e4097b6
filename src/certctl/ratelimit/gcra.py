"""Limits of N requests per window W by GCRA (the generic cell rate algorithm).

GCRA keeps one number per key, the theoretical arrival time (TAT): when the key's
allowance would be whole again if nothing more came. Each request moves it one emission
interval T = W/N later; a request is refused while the new TAT would lie more than W
ahead of now. So N requests fit at once (the burst), then one every T, and the refusal
says exactly how long until the next one fits. One value per key is what lets the shared
store be a single atomic Redis script.

Time is whole microseconds (``now`` in seconds is converted once), so N requests at one
instant are exactly N, in Python and in Lua alike (floats would let 7 x 3600/7 exceed
3600). ``now`` is wall-clock seconds from the caller, the same clock on every replica.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from certctl.ratelimit.buckets import DEFAULT_MAX_KEYS, Decision

MICROS = 1_000_000
REDIS_PREFIX = "certctl:rl:"
# A shared store that does not answer within this is treated as down (see FailoverStore):
# a rate-limit check must never hold a request for long.
REDIS_TIMEOUT_S = 0.5


class StoreUnavailableError(Exception):
    """The store could not answer (a shared store that is down or unreachable)."""


class LimitStore(Protocol):
    def check(self, key: str, limit: int, window_s: float, now: float) -> Decision:
        """Count one request of ``key`` if ``limit`` per ``window_s`` allows it at ``now``
        (seconds); a refusal carries the seconds until one is allowed. ``limit`` 0 or less
        is no limit."""
        ...


def interval_us(limit: int, window_s: float) -> int:
    """The emission interval T = W/N in whole microseconds, rounded down (never zero)."""
    return max(1, int(window_s * MICROS) // limit)


def gcra_step(tat_us: int | None, now_us: int, t_us: int, window_us: int) -> tuple[bool, int]:
    """One GCRA step: (allowed, new TAT) or (refused, microseconds until allowed)."""
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + t_us
    allow_at = new_tat - window_us
    if allow_at > now_us:
        return False, allow_at - now_us
    return True, new_tat


class MemoryGcraStore:
    """GCRA in this process's memory. Thread-safe. Memory is bounded: past ``max_keys``
    the least recently used key is forgotten, which only ever errs towards allowing."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self._max_keys = max_keys
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tats)

    def check(self, key: str, limit: int, window_s: float, now: float) -> Decision:
        if limit <= 0:
            return Decision(True)
        now_us = round(now * MICROS)
        window_us = int(window_s * MICROS)
        with self._lock:
            tat = self._tats.pop(key, None)
            allowed, value = gcra_step(tat, now_us, interval_us(limit, window_s), window_us)
            if allowed:
                self._tats[key] = value
            elif tat is not None:
                self._tats[key] = tat
            if len(self._tats) > self._max_keys:
                self._tats.popitem(last=False)
        return Decision(True) if allowed else Decision(False, value / MICROS)


# KEYS[1]: the key; ARGV: now, T, W (microseconds). Returns {allowed, wait}. The TAT is
# written with %.0f: Lua 5.1's tostring keeps 14 digits, and a TAT has 16. The key
# expires when its TAT passes (at most W from now): after that it would read as fresh.
_GCRA_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, 0}
"""


class RedisGcraStore:
    """GCRA in Redis, one atomic script per check, so every replica shares each limit.
    Keys are ``certctl:rl:<key>`` and expire within the window. Any Redis failure is
    ``StoreUnavailableError``; the caller decides what that means (see FailoverStore)."""

    def __init__(self, client: redis.Redis, *, prefix: str = REDIS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_GCRA_LUA)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = REDIS_TIMEOUT_S) -> RedisGcraStore:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry on a fresh connection (a pooled one may predate a Redis
            # restart); the default retries with back-off would stall requests for seconds.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return cls(client)

    def check(self, key: str, limit: int, window_s: float, now: float) -> Decision:
        if limit <= 0:
            return Decision(True)
        args = [round(now * MICROS), interval_us(limit, window_s), int(window_s * MICROS)]
        try:
            allowed, wait = self._script(keys=[self._prefix + key], args=args)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {type(exc).__name__}: {exc}") from exc
        return Decision(True) if int(allowed) == 1 else Decision(False, int(wait) / MICROS)

    def close(self) -> None:
        self._client.close()
