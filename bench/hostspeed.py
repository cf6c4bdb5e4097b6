"""A yardstick for the host's speed, printed in the benchmark report."""

from __future__ import annotations

import time

HOST_SPEED_LOOP = 5_000_000


def host_speed_s() -> float:
    """Seconds a fixed pure-Python loop takes here, best of 3: a yardstick for the host's
    speed at the time. The same machine has been seen to run the same code a third
    slower from one hour to the next, so figures of two reports compare only when their
    yardsticks do."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(HOST_SPEED_LOOP):
            total += i
        best = min(best, time.perf_counter() - began)
    return best
