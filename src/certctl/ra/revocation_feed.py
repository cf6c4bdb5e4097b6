"""Follow the revocation feed (``certificate_revocations``) from any process.

Every process that answers OCSP or serves CRLs keeps its own caches; a revocation committed
by another worker, replica or ``certctl cert revoke`` reaches them through this feed. A
follower remembers the last ``seq`` it has seen and reads what came after.

Sequence numbers are handed out at insert, not at commit (PostgreSQL): a revocation that
took seq 5 may commit after the one that took seq 6. A follower that saw 6 therefore keeps
5 as a gap and reads from there again until 5 appears, or until ``gap_wait`` has passed
(the transaction rolled back and the number is never used). Rows already seen are never
reported twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from certctl.storage import revocations
from certctl.storage.db import Database
from certctl.storage.revocations import Revocation

PAGE = 1000
# Longer than any revocation transaction (a few statements), so a late commit is not missed.
DEFAULT_GAP_WAIT = 60.0
# More missing numbers in one jump than revocations could be in flight at once: a sequence
# that skipped ahead (PostgreSQL caches sequence values and loses them in a crash), not gaps.
MAX_GAP = 1000


class FeedFollower:
    """Reads new feed rows; ``poll`` is thread-safe and never reports a row twice."""

    def __init__(
        self,
        db: Database,
        *,
        start_after: int | None = None,
        ticker: Callable[[], float] = time.monotonic,
        gap_wait: float = DEFAULT_GAP_WAIT,
    ) -> None:
        self._db = db
        self._ticker = ticker
        self._gap_wait = gap_wait
        if start_after is None:
            with db.read() as conn:
                start_after = revocations.latest_seq(conn)
        self._last_seq = start_after
        self._gaps: dict[int, float] = {}  # missing seq -> when it was first missed
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def poll(self) -> list[Revocation]:
        """Rows committed since the last poll, in seq order."""
        with self._lock:
            found: list[Revocation] = []
            while True:
                with self._db.read() as conn:
                    rows = revocations.feed_since(conn, self._floor(), limit=PAGE)
                found += self._take(rows)
                if len(rows) < PAGE:
                    break
            self._expire_gaps()
            return found

    def recent(self, count: int) -> list[Revocation]:
        """The last ``count`` rows up to where this follower started (or has read)."""
        with self._db.read() as conn:
            rows = revocations.feed_since(conn, max(0, self._last_seq - count), limit=count)
        return [row for row in rows if row.seq <= self._last_seq]

    def _floor(self) -> int:
        return min(self._gaps) - 1 if self._gaps else self._last_seq

    def _take(self, rows: list[Revocation]) -> list[Revocation]:
        new: list[Revocation] = []
        now = self._ticker()
        for row in rows:
            if row.seq in self._gaps:
                del self._gaps[row.seq]
            elif row.seq <= self._last_seq:
                continue  # read again while waiting for an older gap
            else:
                if row.seq - self._last_seq - 1 <= MAX_GAP:
                    for missing in range(self._last_seq + 1, row.seq):
                        self._gaps.setdefault(missing, now)
                self._last_seq = row.seq
            new.append(row)
        return new

    def _expire_gaps(self) -> None:
        now = self._ticker()
        for seq, since in list(self._gaps.items()):
            if now - since >= self._gap_wait:
                del self._gaps[seq]
