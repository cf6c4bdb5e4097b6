"""new-order completes on a store whose pool holds exactly one connection.

Regression test for a stall seen under load on SQLite: the concurrent-orders cap, which
may look up rate-limit overrides in the database, was read while new-order held a pooled
connection (its pre-check read, then its write transaction), so the lookup checked out a
second one. Under load every other pooled connection was waiting for SQLite's write lock,
held by the very transaction that waited for one of them, and writers stalled for the
15 s busy timeout. With one connection and no overflow, any connection new-order takes
while it holds another cannot be served: the pool times out at once, with no load needed.

Only behaviour is tested (``new_order`` finishes, and applies the override), so the test
holds whatever shape the code takes, as long as no connection is taken inside another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from certctl.config import AcmeServerSettings, RateLimitSettings
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Account, OrderStatus, Profile
from certctl.ra import orders, ratelimits
from certctl.ra.context import RAContext
from certctl.ra.ratelimits import OverrideCache, RateLimits
from certctl.ratelimit import MemoryGcraStore
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, seed_profile

# How long a checkout may wait for the one connection: a nested checkout fails after this
# (instead of SQLAlchemy's default 30 s); an uncontended new-order takes milliseconds.
POOL_TIMEOUT_S = 3.0
# How long a call may take before it counts as stalled (a deadlock would never return).
CALL_DEADLINE_S = 20.0
# Lower than the setting (5), so a refusal at the third order proves the override was
# really looked up, and applied, with the one connection.
ACCOUNT_CAP = 2


def one_connection_engine(url: str) -> Engine:
    """A SQLite engine set up as certctl's (WAL, busy timeout; ``Database`` itself sends
    ``BEGIN IMMEDIATE`` for writers) whose pool holds a single connection:
    ``pool_size=1``, no overflow."""
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # Database issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite file store whose pool holds exactly one connection."""
    url = f"sqlite+pysqlite:///{tmp_path / 'certctl.db'}"
    setup = Database(url)
    setup.migrate()
    setup.dispose()
    database = Database(url, pool_size=1)
    database.engine.dispose()
    database.engine = one_connection_engine(url)
    try:
        yield database
    finally:
        database.dispose()


def within_deadline(db: Database, call: Callable[[], orders.OrderView]) -> orders.OrderView:
    """Run ``call`` on a thread; fail if it raises (a pool timeout) or has not returned by
    CALL_DEADLINE_S (a deadlock). The thread gives its connection back when done (each
    thread otherwise keeps its last one, and the pool holds one)."""
    result: list[orders.OrderView] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # re-raised on the test's thread below
            errors.append(exc)
        finally:
            db.release_idle()

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(CALL_DEADLINE_S)
    took = time.monotonic() - started
    assert not worker.is_alive(), f"new_order still running after {took:.1f} s: deadlocked"
    if errors:
        raise errors[0]
    return result[0]


def test_new_order_with_a_looked_up_cap_needs_one_connection_at_a_time(db: Database) -> None:
    ctx = RAContext(db, lambda: NOW, AcmeServerSettings())
    with db.write() as conn:
        profile: Profile = seed_profile(conn)
        account: Account = new_account(conn)
    ratelimits.set_override(ctx, "account", account.id, "concurrent_orders", ACCOUNT_CAP, "t")
    db.release_idle()
    limits = RateLimits(
        RateLimitSettings(concurrent_orders=5),
        MemoryGcraStore(),
        # ttl=0: every lookup goes to the database, wherever new_order makes it.
        overrides=OverrideCache(db, ttl=0),
        clock=NOW.timestamp,
    )

    def order(name: str) -> orders.OrderView:
        payload = {"identifiers": [{"type": "dns", "value": name}]}
        return orders.new_order(ctx, profile, account, payload, limits)

    for i in range(ACCOUNT_CAP):
        view = within_deadline(db, partial(order, f"n{i}.example"))
        assert view.order.account_id == account.id
        assert view.status is OrderStatus.READY  # trust_authenticated: ready at once
    # The account's override (2), not the setting (5), holds back the next open order.
    with pytest.raises(AcmeError) as refused:
        within_deadline(db, partial(order, "over.example"))
    assert refused.value.type is ProblemType.RATE_LIMITED
    assert f"at most {ACCOUNT_CAP}" in refused.value.detail
