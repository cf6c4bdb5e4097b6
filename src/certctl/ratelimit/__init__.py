"""certctl.ratelimit: request limits, pure and in memory for now (one node).

``TokenBucketLimiter`` keeps one bucket per key (a client address for the unauthenticated
PKI routes); ``client_key`` turns an address into that key. A shared store (Redis, the
database) for a fleet will sit behind the same ``acquire`` call.
"""

from certctl.ratelimit.buckets import Decision, TokenBucketLimiter, client_key

__all__ = ["Decision", "TokenBucketLimiter", "client_key"]
