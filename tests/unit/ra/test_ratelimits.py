"""The rate-limit policy against real SQLite and PostgreSQL: overrides, open orders, trips."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from certctl.config import AcmeServerSettings, RateLimitSettings
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Account, AuthzStatus, OrderStatus
from certctl.ra import ratelimits
from certctl.ra.context import RAContext
from certctl.ra.ratelimits import Limit, OverrideCache, RateLimits
from certctl.ratelimit import MemoryGcraStore
from certctl.storage import audit_log
from certctl.storage import orders as order_store
from certctl.storage.db import Database
from certctl.storage.schema import acme_orders
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile


class Ticker:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ctx_for(db: Database) -> RAContext:
    return RAContext(db, lambda: NOW, AcmeServerSettings())


@pytest.fixture
def account(db: Database) -> Account:
    with db.write() as conn:
        seed_profile(conn)
        seed_profile(conn, "other")
        return new_account(conn)


def limits_for(
    db: Database, settings: RateLimitSettings, trips: list[str] | None = None
) -> tuple[RateLimits, Ticker]:
    ticker = Ticker()
    limits = RateLimits(
        settings,
        MemoryGcraStore(),
        overrides=OverrideCache(db, clock=ticker),
        clock=NOW.timestamp,
        on_trip=(trips.append if trips is not None else lambda _: None),
    )
    return limits, ticker


def trip(call: object) -> AcmeError:
    assert isinstance(call, AcmeError)
    return call


def test_account_beats_profile_beats_setting(db: Database, account: Account) -> None:
    limits, ticker = limits_for(db, RateLimitSettings(orders_per_hour=100))
    ctx = ctx_for(db)

    def value() -> int:
        return limits.value(Limit.ORDERS_PER_HOUR, account_id=account.id, profile_id="default")

    assert value() == 100
    ratelimits.set_override(ctx, "profile", "default", "orders_per_hour", 7, "cli")
    assert value() == 100  # cached for OVERRIDES_TTL_S
    ticker.now += ratelimits.OVERRIDES_TTL_S
    assert value() == 7
    ratelimits.set_override(ctx, "account", account.id, "orders_per_hour", 0, "cli")
    ticker.now += ratelimits.OVERRIDES_TTL_S
    assert value() == 0  # an account override of 0 turns the limit off for it
    # Other profiles and other limits are untouched.
    assert limits.value(Limit.ORDERS_PER_HOUR, account_id=None, profile_id="other") == 100
    assert limits.value(Limit.KEY_CHANGE_PER_HOUR, account_id=account.id, profile_id="x") == 5
    ratelimits.delete_override(ctx, "account", account.id, "orders_per_hour", "cli")
    ticker.now += ratelimits.OVERRIDES_TTL_S
    assert value() == 7


def test_override_changes_are_audited_and_listed(db: Database, account: Account) -> None:
    ctx = ctx_for(db)
    ratelimits.set_override(ctx, "account", account.id, "key_change_per_hour", 9, "cli")
    ratelimits.set_override(ctx, "account", account.id, "key_change_per_hour", 11, "cli")
    ratelimits.set_override(ctx, "profile", "other", "new_accounts_per_ip_per_hour", 1, "cli")
    listed = [
        (o.scope, o.subject_id, o.limit_name, o.value) for o in ratelimits.list_overrides(ctx)
    ]
    assert listed == [
        ("account", account.id, "key_change_per_hour", 11),
        ("profile", "other", "new_accounts_per_ip_per_hour", 1),
    ]
    ratelimits.delete_override(ctx, "account", account.id, "key_change_per_hour", "cli")
    with db.read() as conn:
        events = audit_log.list_for(conn, "ratelimit_override", account.id)
    # One clock instant: compare as sets of (action, details), not in order.
    seen = sorted((e["action"], e["details"]) for e in events)
    assert [action for action, _ in seen] == [
        "ratelimit_override_deleted",
        "ratelimit_override_set",
        "ratelimit_override_set",
    ]
    details = [json.loads(d) for _, d in seen]
    assert details[0] == {"scope": "account", "limit": "key_change_per_hour", "previous": 11}
    assert {(d["previous"], d["value"]) for d in details[1:]} == {(None, 9), (9, 11)}
    assert {e["actor"] for e in events} == {"cli"}


@pytest.mark.parametrize(
    ("scope", "subject", "limit", "value", "problem"),
    [
        ("account", "acct-none", "orders_per_hour", 1, ProblemType.NOT_FOUND),
        ("profile", "nope", "orders_per_hour", 1, ProblemType.NOT_FOUND),
        ("team", "default", "orders_per_hour", 1, ProblemType.MALFORMED),
        ("profile", "default", "orders_per_day", 1, ProblemType.MALFORMED),
        ("profile", "default", "orders_per_hour", -1, ProblemType.MALFORMED),
        ("profile", "default", "orders_per_hour", 1_000_001, ProblemType.MALFORMED),
        ("account", "ACCOUNT", "new_accounts_per_ip_per_hour", 1, ProblemType.MALFORMED),
    ],
)
def test_bad_overrides_are_refused(
    db: Database,
    account: Account,
    scope: str,
    subject: str,
    limit: str,
    value: int,
    problem: ProblemType,
) -> None:
    subject = account.id if subject == "ACCOUNT" else subject
    with pytest.raises(AcmeError) as info:
        ratelimits.set_override(ctx_for(db), scope, subject, limit, value, "cli")
    assert info.value.type is problem
    assert ratelimits.list_overrides(ctx_for(db)) == []


def test_deleting_a_missing_override_is_not_found(db: Database, account: Account) -> None:
    with pytest.raises(AcmeError) as info:
        ratelimits.delete_override(ctx_for(db), "account", account.id, "orders_per_hour", "c")
    assert info.value.type is ProblemType.NOT_FOUND
    with pytest.raises(AcmeError):
        ratelimits.delete_override(ctx_for(db), "nobody", account.id, "orders_per_hour", "c")


def test_hourly_trips_name_the_limit_and_count_the_metric(db: Database, account: Account) -> None:
    trips: list[str] = []
    limits, _ = limits_for(db, RateLimitSettings(orders_per_hour=2, key_change_per_hour=1), trips)
    limits.new_order(account.id, "default", renewal_due=False)
    limits.new_order(account.id, "default", renewal_due=False)
    with pytest.raises(AcmeError) as info:
        limits.new_order(account.id, "default", renewal_due=False)
    err = info.value
    assert err.type is ProblemType.RATE_LIMITED and err.http_status == 429
    assert err.retry_after == 1800
    assert "orders_per_hour" in err.detail and "at most 2 new orders" in err.detail
    # A renewal the server asked for (ARI window open) is not held back, nor counted.
    limits.new_order(account.id, "default", renewal_due=True)
    limits.key_change(account.id, "default")
    with pytest.raises(AcmeError) as info:
        limits.key_change(account.id, "default")
    assert info.value.retry_after == 3600
    assert trips == ["orders_per_hour", "key_change_per_hour"]


def test_new_accounts_count_per_address_and_ipv6_per_64(db: Database, account: Account) -> None:
    limits, _ = limits_for(db, RateLimitSettings(new_accounts_per_ip_per_hour=1))
    limits.new_account("2001:db8:1:2::1", "default")
    with pytest.raises(AcmeError):
        limits.new_account("2001:db8:1:2:ffff::9", "other")  # same /64, another profile
    limits.new_account("2001:db8:1:3::1", "default")
    limits.new_account("192.0.2.1", "default")
    with pytest.raises(AcmeError):
        limits.new_account("::ffff:192.0.2.1", "default")  # the same IPv4 client
    limits.new_account(None, "default")  # no peer address (a Unix socket): not limited
    limits.new_account(None, "default")


def test_challenge_responds_count_per_challenge(db: Database, account: Account) -> None:
    limits, _ = limits_for(db, RateLimitSettings(challenge_responds_per_hour=2))
    for _ in range(2):
        limits.challenge_respond("chall-a", account.id, "default")
    with pytest.raises(AcmeError):
        limits.challenge_respond("chall-a", account.id, "default")
    limits.challenge_respond("chall-b", account.id, "default")


def test_disabled_limits_nothing(db: Database, account: Account) -> None:
    limits = RateLimits.disabled()
    for _ in range(200):
        limits.new_order(account.id, "default", renewal_due=False)
        limits.key_change(account.id, "default")
        limits.new_account("192.0.2.1", "default")
    with db.write() as conn:
        for _ in range(10):
            new_order(conn, account)
        limits.open_orders(conn, account.id, "default", NOW)


# -- open orders ---------------------------------------------------------------------------


def test_open_orders_are_pending_ready_or_processing_and_unexpired(
    db: Database, account: Account
) -> None:
    with db.write() as conn:
        ready = new_order(conn, account)  # trust mode: valid authz, derived ready
        pending = new_order(conn, account, authz_status=AuthzStatus.PENDING)
        processing = new_order(conn, account)
        order_store.begin_processing(conn, processing.id, "0a", NOW)
        done = new_order(conn, account)
        conn.execute(update(acme_orders).where(acme_orders.c.id == done.id).values(status="valid"))
        new_order(conn, account, authz_status=AuthzStatus.INVALID)  # derived invalid
        new_order(conn, account, authz_status=AuthzStatus.DEACTIVATED)
        new_order(conn, account, created_at=NOW - timedelta(hours=25))  # expired
        other = new_account(conn)
        new_order(conn, other)
    with db.read() as conn:
        count, earliest = order_store.open_orders(conn, account.id, NOW)
    assert count == 3, (ready.id, pending.id, processing.id)
    assert earliest == NOW + timedelta(hours=24)
    # Once an open order's authorization expires, it is not open any more.
    with db.read() as conn:
        later = NOW + timedelta(hours=24, seconds=1)
        assert order_store.open_orders(conn, account.id, later) == (0, None)


def test_concurrent_orders_trip_with_the_earliest_expiry(db: Database, account: Account) -> None:
    trips: list[str] = []
    limits, _ = limits_for(db, RateLimitSettings(concurrent_orders=2), trips)
    with db.write() as conn:
        new_order(conn, account, created_at=NOW - timedelta(hours=3))
        limits.open_orders(conn, account.id, "default", NOW)  # 1 open < 2
        new_order(conn, account)
    with pytest.raises(AcmeError) as info, db.write() as conn:
        limits.open_orders(conn, account.id, "default", NOW)
    assert info.value.type is ProblemType.RATE_LIMITED
    assert info.value.retry_after == 21 * 3600  # the older one expires in 21 h
    assert "concurrent_orders" in info.value.detail
    assert trips == ["concurrent_orders"]
    # Finalizing one frees a place at once.
    with db.write() as conn:
        first = conn.execute(
            update(acme_orders)
            .where(acme_orders.c.account_id == account.id, acme_orders.c.created_at < NOW)
            .values(status=OrderStatus.VALID.value)
        )
        assert first.rowcount == 1
        limits.open_orders(conn, account.id, "default", NOW)


def test_open_orders_earliest_is_aware_utc(db: Database, account: Account) -> None:
    with db.write() as conn:
        new_order(conn, account)
    with db.read() as conn:
        _, earliest = order_store.open_orders(conn, account.id, NOW, lock=True)
    assert isinstance(earliest, datetime) and earliest.utcoffset() == timedelta(0)
