"""ACME rate limits: which limit applies, to which key, at what value, and who is exempt.

Five limits (design notes, Phase 5), each N per hour by GCRA in a ``LimitStore`` (memory,
or Redis for a fleet), except concurrent orders, which the database counts:

- ``orders_per_hour``: new orders per account. A renewal whose ``replaces`` names a
  certificate already inside its ARI window (RFC 9773) is exempt: the server asked for it.
- ``concurrent_orders``: open orders per account, counted in the new order's transaction.
- ``key_change_per_hour``: key rollovers per account.
- ``challenge_responds_per_hour``: responses (POST ``{}``) per challenge.
- ``new_accounts_per_ip_per_hour``: accounts created per client address (IPv6 by /64).

The value of a limit is the account's override, else its profile's, else the setting; 0
turns it off. Overrides are read from the database at most every ``OVERRIDES_TTL_S``. A
request is counted only once it has passed every other check, so refused requests cost
nothing. A trip is ``rateLimited`` (429) with ``Retry-After``: the seconds until the limit
allows the next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection

from certctl.config import RateLimitSettings
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found
from certctl.ra.context import RAContext
from certctl.ratelimit import LimitStore, MemoryGcraStore, client_key
from certctl.storage import accounts as account_store
from certctl.storage import audit_log, inventory
from certctl.storage import orders as order_store
from certctl.storage import ratelimit_overrides as store
from certctl.storage.db import Database
from certctl.storage.ratelimit_overrides import Override

WINDOW_S = 3600.0
OVERRIDES_TTL_S = 2.0
SCOPES = ("account", "profile")


class Limit(StrEnum):
    ORDERS_PER_HOUR = "orders_per_hour"
    CONCURRENT_ORDERS = "concurrent_orders"
    KEY_CHANGE_PER_HOUR = "key_change_per_hour"
    CHALLENGE_RESPONDS_PER_HOUR = "challenge_responds_per_hour"
    NEW_ACCOUNTS_PER_IP_PER_HOUR = "new_accounts_per_ip_per_hour"

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    Limit.ORDERS_PER_HOUR: "new orders per account per hour",
    Limit.CONCURRENT_ORDERS: "open (pending, ready or processing) orders per account",
    Limit.KEY_CHANGE_PER_HOUR: "account key changes per account per hour",
    Limit.CHALLENGE_RESPONDS_PER_HOUR: "responses per challenge per hour",
    Limit.NEW_ACCOUNTS_PER_IP_PER_HOUR: "new accounts per client address (IPv6: /64) per hour",
}


def _setting(settings: RateLimitSettings, limit: Limit) -> int:
    value: int = getattr(settings, limit.value)
    return value


def _nothing(_: str) -> None:
    return None


class OverrideCache:
    """Every override, re-read from the database at most every ``ttl`` seconds (a change
    made with ``certctl ratelimit`` applies within that time on every replica)."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float = OVERRIDES_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._values: dict[tuple[str, str, str], int] = {}

    def value(self, scope: str, subject_id: str, limit: Limit) -> int | None:
        now = self._clock()
        with self._lock:
            if self._loaded_at is None or now - self._loaded_at >= self._ttl:
                with self._db.read() as conn:
                    rows = store.list_all(conn)
                self._values = {(o.scope, o.subject_id, o.limit_name): o.value for o in rows}
                self._loaded_at = now
            return self._values.get((scope, subject_id, limit.value))


class RateLimits:
    """The policy the RA calls. ``RateLimits.disabled()`` limits nothing."""

    def __init__(
        self,
        settings: RateLimitSettings,
        store: LimitStore,
        *,
        overrides: OverrideCache | None = None,
        clock: Callable[[], float] = time.time,
        on_trip: Callable[[str], None] = _nothing,
    ) -> None:
        self.settings = settings
        self.store = store
        self._overrides = overrides
        self._clock = clock
        self._on_trip = on_trip

    @classmethod
    def disabled(cls) -> RateLimits:
        return _DISABLED

    def value(self, limit: Limit, *, account_id: str | None, profile_id: str | None) -> int:
        """The account's override, else the profile's, else the setting."""
        if self._overrides is not None:
            for scope, subject in (("account", account_id), ("profile", profile_id)):
                if subject is not None:
                    found = self._overrides.value(scope, subject, limit)
                    if found is not None:
                        return found
        return _setting(self.settings, limit)

    def _spend(self, limit: Limit, key: str, *, account_id: str | None, profile_id: str) -> None:
        n = self.value(limit, account_id=account_id, profile_id=profile_id)
        if n <= 0:
            return
        decision = self.store.check(f"{limit.value}:{key}", n, WINDOW_S, self._clock())
        if not decision.allowed:
            raise self._trip(limit, n, decision.retry_after)

    def _trip(self, limit: Limit, n: int, retry_after: float) -> AcmeError:
        self._on_trip(limit.value)
        seconds = max(1, math.ceil(retry_after))
        return AcmeError(
            ProblemType.RATE_LIMITED,
            f"rate limit {limit.value} reached: at most {n} {limit.meaning}; "
            f"retry after {seconds} s",
            retry_after=seconds,
        )

    # -- the limits, where the RA applies them --------------------------------------------
    def new_order(self, account_id: str, profile_id: str, *, renewal_due: bool) -> None:
        if not renewal_due:  # RFC 9773: a renewal the server asked for is never held back
            self._spend(
                Limit.ORDERS_PER_HOUR, account_id, account_id=account_id, profile_id=profile_id
            )

    def new_order_counted(self, account_id: str, profile_id: str, *, renewal_due: bool) -> bool:
        """Whether ``new_order`` would spend some of an hourly allowance."""
        hourly = self.value(Limit.ORDERS_PER_HOUR, account_id=account_id, profile_id=profile_id)
        return not renewal_due and hourly > 0

    def open_orders(
        self,
        conn: Connection,
        account_id: str,
        profile_id: str,
        now: datetime,
        *,
        cap: int | None = None,
    ) -> None:
        """Inside the new order's write transaction, before its insert: the account's row
        locked, then its open orders counted, exactly. (newOrder's pre-check, before any
        transaction, reads the count itself and passes it to ``check_open_orders``.)

        Pass ``cap`` (from ``concurrent_orders_cap``, read before any transaction): looking
        it up here may open a second pool connection while ``conn`` holds SQLite's write
        lock, and under load every pooled connection then waits on that lock."""
        n = cap if cap is not None else self.concurrent_orders_cap(account_id, profile_id)
        if n <= 0:
            return
        self.check_open_orders(n, order_store.open_orders(conn, account_id, now, lock=True), now)

    def check_open_orders(
        self, cap: int, counted: tuple[int, datetime | None], now: datetime
    ) -> None:
        """Refuse when ``counted`` (an ``open_orders`` count and earliest expiry, read
        already) reaches ``cap``."""
        count, earliest = counted
        if count >= cap:
            # The earliest open order expires by then, at the latest (sooner if finished).
            wait = (earliest - now).total_seconds() if earliest is not None else WINDOW_S
            raise self._trip(Limit.CONCURRENT_ORDERS, cap, wait)

    def concurrent_orders_cap(self, account_id: str, profile_id: str) -> int:
        return self.value(Limit.CONCURRENT_ORDERS, account_id=account_id, profile_id=profile_id)

    def key_change(self, account_id: str, profile_id: str) -> None:
        self._spend(
            Limit.KEY_CHANGE_PER_HOUR, account_id, account_id=account_id, profile_id=profile_id
        )

    def challenge_respond(self, challenge_id: str, account_id: str, profile_id: str) -> None:
        self._spend(
            Limit.CHALLENGE_RESPONDS_PER_HOUR,
            challenge_id,
            account_id=account_id,
            profile_id=profile_id,
        )

    def new_account(self, client_address: str | None, profile_id: str) -> None:
        if client_address:
            self._spend(
                Limit.NEW_ACCOUNTS_PER_IP_PER_HOUR,
                client_key(client_address),
                account_id=None,
                profile_id=profile_id,
            )


_DISABLED = RateLimits(RateLimitSettings(0, 0, 0, 0, 0), MemoryGcraStore(max_keys=1))


# -- overrides, managed by `certctl ratelimit` ----------------------------------------------


def _limit(name: str) -> Limit:
    try:
        return Limit(name)
    except ValueError:
        names = ", ".join(limit.value for limit in Limit)
        raise malformed(f"unknown limit {name!r}; limits: {names}") from None


def _check_subject(conn: Connection, scope: str, subject_id: str) -> None:
    if scope == "account":
        if account_store.get(conn, subject_id) is None:
            raise not_found(f"no account {subject_id!r}")
    elif scope == "profile":
        if inventory.get_profile(conn, subject_id) is None:
            raise not_found(f"no profile {subject_id!r}")
    else:
        raise malformed(f"scope must be one of {', '.join(SCOPES)}")


def set_override(
    ctx: RAContext, scope: str, subject_id: str, limit_name: str, value: int, actor: str
) -> None:
    limit = _limit(limit_name)
    if not 0 <= value <= 1_000_000:
        raise malformed("a limit is 0 (off) to 1000000")
    if scope == "account" and limit is Limit.NEW_ACCOUNTS_PER_IP_PER_HOUR:
        raise malformed(f"{limit.value} applies before an account exists: set it per profile")
    now = ctx.clock()
    with ctx.db.write() as conn:
        _check_subject(conn, scope, subject_id)
        previous = store.get(conn, scope, subject_id, limit.value)
        store.put(conn, scope, subject_id, limit.value, value, now)
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="ratelimit_override_set",
            object_type="ratelimit_override",
            object_id=subject_id,
            details={"scope": scope, "limit": limit.value, "value": value, "previous": previous},
        )


def delete_override(
    ctx: RAContext, scope: str, subject_id: str, limit_name: str, actor: str
) -> None:
    limit = _limit(limit_name)
    if scope not in SCOPES:
        raise malformed(f"scope must be one of {', '.join(SCOPES)}")
    now = ctx.clock()
    with ctx.db.write() as conn:
        previous = store.get(conn, scope, subject_id, limit.value)
        if previous is None or not store.remove(conn, scope, subject_id, limit.value):
            raise not_found(f"no {limit.value} override for {scope} {subject_id!r}")
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="ratelimit_override_deleted",
            object_type="ratelimit_override",
            object_id=subject_id,
            details={"scope": scope, "limit": limit.value, "previous": previous},
        )


def list_overrides(ctx: RAContext) -> list[Override]:
    with ctx.db.read() as conn:
        return store.list_all(conn)
