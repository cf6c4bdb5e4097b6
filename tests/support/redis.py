"""The Redis server of the rate-limit tests: reachability, and removing the tests' keys.

Tests use database 15 of CERTCTL_TEST_REDIS_URL's server (default 127.0.0.1:6379), never
flush it (xdist workers share it), and delete only the keys under their own prefix.
"""

from __future__ import annotations

import os
import uuid

import redis

REDIS_URL_ENV = "CERTCTL_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CONNECT_TIMEOUT_S = 2.0


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url or redis_url(), socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=2.0
    )


def unavailable_reason() -> str | None:
    """None when the server answers PING, else a one-line reason."""
    try:
        with client() as conn:
            conn.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis at {redis_url()} unreachable: {type(exc).__name__}: {exc}"
    return None


def unique_prefix() -> str:
    return f"certctl:rl:test-{uuid.uuid4().hex[:12]}:"


def delete_matching(pattern: str, url: str | None = None) -> int:
    """Delete the keys matching ``pattern`` (SCAN, never KEYS or FLUSHDB)."""
    with client(url) as conn:
        keys = list(conn.scan_iter(match=pattern, count=500))
        return int(conn.delete(*keys)) if keys else 0
