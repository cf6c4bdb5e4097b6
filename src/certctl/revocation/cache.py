"""Pre-signed OCSP responses, kept in memory per (issuer id, serial).

RFC 5019 §2.2.4 lets a responder answer from responses produced ahead of time, so the hot
path serves bytes without signing. An entry is fresh until half its validity has passed:
then it is reported missing and the caller signs a new one (CA/B BR §4.9.10 asks for an
update at the latest halfway through a validity interval of 16 hours or more).

Revocation races pre-signing: a response signed from a status read *before* a revocation
must not land *after* it. ``version`` and ``invalidate`` close that gap: read the version,
then the status, sign, and ``put`` with that version; a put that an invalidation overtook
is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

DEFAULT_MAX_ENTRIES = 100_000

_Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class _Entry:
    der: bytes
    this_update: datetime
    refresh_at: datetime
    status: str = ""  # what the response says (good, revoked), if the caller told us


class OCSPCache:
    """A bounded, thread-safe LRU of DER OCSP responses without nonce."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        # Key -> counter value of its latest invalidation, oldest first, at most max_entries;
        # puts older than any forgotten invalidation (``_floor``) are refused wholesale.
        self._invalidated: dict[_Key, int] = {}
        self._counter = 0
        self._floor = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, issuer_id: str, serial: int, now: datetime) -> bytes | None:
        """The cached response, or None when there is none or it is due for a refresh."""
        hit = self.lookup(issuer_id, serial, now)
        return hit[0] if hit is not None else None

    def lookup(self, issuer_id: str, serial: int, now: datetime) -> tuple[bytes, str] | None:
        """``get`` with the status given to ``put`` ("" if none was)."""
        key = (issuer_id, serial)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry.refresh_at:
                del self._entries[key]
                return None
            if now < entry.this_update:
                return None  # signed by a node whose clock runs ahead; not valid yet
            self._entries.move_to_end(key)
            return entry.der, entry.status

    def version(self, issuer_id: str, serial: int) -> int:
        """A token to pass to ``put``; read it before reading the certificate's status."""
        del issuer_id, serial  # one counter serves every key
        with self._lock:
            return self._counter

    def put(
        self,
        issuer_id: str,
        serial: int,
        der: bytes,
        *,
        this_update: datetime,
        next_update: datetime,
        version: int | None = None,
        status: str = "",
    ) -> bool:
        """Store ``der`` (valid from ``this_update`` to ``next_update``).

        False, and nothing stored, when ``invalidate`` ran for this key after ``version``
        was read: the response may predate a revocation.
        """
        if next_update <= this_update:
            raise ValueError("next_update must be after this_update")
        key = (issuer_id, serial)
        entry = _Entry(der, this_update, this_update + (next_update - this_update) / 2, status)
        with self._lock:
            if version is not None and (
                version < self._floor or self._invalidated.get(key, -1) > version
            ):
                return False
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return True

    def invalidate(self, issuer_id: str, serial: int) -> None:
        """Forget the response for this serial (its status changed) and refuse older puts."""
        key = (issuer_id, serial)
        with self._lock:
            self._counter += 1
            self._invalidated.pop(key, None)  # re-insert at the end: newest last
            self._invalidated[key] = self._counter
            if len(self._invalidated) > self._max_entries:
                oldest = next(iter(self._invalidated))
                self._floor = self._invalidated.pop(oldest)
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every response (a new responder certificate, for instance)."""
        with self._lock:
            self._entries.clear()
