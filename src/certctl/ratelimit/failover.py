"""Fail open to a local store while the shared one is down.

A rate limit protects the CA; an unreachable Redis must not take issuance down with it.
While the shared store fails, checks go to a store in this process's memory, so limits
still hold, per replica instead of across the fleet. The shared store is tried again
after ``retry_s``; one warning is logged per outage (and one line when it is back), and
``on_error`` counts every failed call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from certctl.ratelimit.buckets import Decision
from certctl.ratelimit.gcra import LimitStore, StoreUnavailableError

log = logging.getLogger(__name__)

RETRY_S = 5.0


def _nothing() -> None:
    return None


class FailoverStore:
    def __init__(
        self,
        primary: LimitStore,
        fallback: LimitStore,
        *,
        retry_s: float = RETRY_S,
        on_error: Callable[[], None] = _nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._retry_s = retry_s
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: float | None = None  # set while an outage lasts

    @property
    def degraded(self) -> bool:
        """True while the shared store is considered down."""
        return self._down_until is not None

    def check(self, key: str, limit: int, window_s: float, now: float) -> Decision:
        down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            return self.fallback.check(key, limit, window_s, now)
        try:
            decision = self.primary.check(key, limit, window_s, now)
        except StoreUnavailableError as exc:
            self._failed(exc)
            return self.fallback.check(key, limit, window_s, now)
        if down_until is not None:
            self._recovered()
        return decision

    def _failed(self, exc: StoreUnavailableError) -> None:
        self._on_error()
        with self._lock:
            first = self._down_until is None
            self._down_until = self._clock() + self._retry_s
        if first:
            log.warning(
                "rate-limit store unavailable; limits now hold per process until it is "
                "back (retrying every %.0f s): %s",
                self._retry_s,
                exc,
            )

    def _recovered(self) -> None:
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = None
        if was_down:
            log.info("rate-limit store is back; limits hold across replicas again")
