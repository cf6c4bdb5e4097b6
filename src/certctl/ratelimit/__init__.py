"""certctl.ratelimit: request limits with pluggable stores.

``TokenBucketLimiter`` keeps one bucket per key in memory (a client address for the
unauthenticated PKI routes); ``client_key`` turns an address into that key. The ACME limits
(N per window) use GCRA through a ``LimitStore``: ``MemoryGcraStore`` for one process,
``RedisGcraStore`` shared by a fleet, and ``FailoverStore`` to fall back from the second to
the first while Redis is down.
"""

from certctl.ratelimit.buckets import Decision, TokenBucketLimiter, client_key
from certctl.ratelimit.failover import FailoverStore
from certctl.ratelimit.gcra import (
    LimitStore,
    MemoryGcraStore,
    RedisGcraStore,
    StoreUnavailableError,
)

__all__ = [
    "Decision",
    "FailoverStore",
    "LimitStore",
    "MemoryGcraStore",
    "RedisGcraStore",
    "StoreUnavailableError",
    "TokenBucketLimiter",
    "client_key",
]
