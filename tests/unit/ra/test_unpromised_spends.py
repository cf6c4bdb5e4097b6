"""With group commit on SQLite, a spent nonce is not what an answer waits for (ra.replay:
``promised=False``): a request that only reads answers without a sync of its own, while
an operation that writes still waits for the sync of its commit, which carries the spend.
The nonce stays single use either way."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Account, Profile
from certctl.ra import orders, replay
from certctl.ra.accounts import AccountCache, authenticate_kid
from certctl.ra.context import RAContext
from certctl.storage import durable
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile

EXPIRES = NOW + timedelta(minutes=5)


class _Syncs:
    """os.fdatasync, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = os.fdatasync
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls += 1
        self._real(fd)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> _Syncs:
    counter = _Syncs()
    monkeypatch.setattr(os, "fdatasync", counter)
    # Commits nobody waits for are synced after LAZY_SYNC_S: not within these tests.
    monkeypatch.setattr(durable, "LAZY_SYNC_S", 60.0)
    return counter


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[tuple[RAContext, Account, Profile]]:
    db = Database(f"sqlite+pysqlite:///{tmp_path / 'r.db'}", group_commit=True)
    db.migrate()
    with db.write() as conn:
        profile = seed_profile(conn)
        account = new_account(conn)
    yield RAContext(db, lambda: NOW, AcmeServerSettings()), account, profile
    db.dispose()


def _settled(syncs: _Syncs) -> int:
    time.sleep(0.05)  # a sync someone asked for would have started by now
    return syncs.calls


def _spends_without_a_sync(ctx: RAContext, syncs: _Syncs, spend: Callable[[str], object]) -> None:
    """``spend`` a fresh nonce: no sync follows, and the nonce is spent all the same."""
    before = _settled(syncs)
    nonce = secrets.token_urlsafe(16)
    spend(nonce)
    assert _settled(syncs) == before
    with pytest.raises(AcmeError) as refused:
        replay.use_nonce(ctx, nonce, EXPIRES)
    assert refused.value.type is ProblemType.BAD_NONCE


def _pending(account: Account, profile: Profile) -> replay.PendingSpend:
    nonce = secrets.token_urlsafe(16)
    return replay.PendingSpend(nonce, EXPIRES, account.id, profile.id, account.jwk_json)


def test_a_spend_on_its_own_asks_for_no_sync(
    grouped: tuple[RAContext, Account, Profile], syncs: _Syncs
) -> None:
    ctx, _, _ = grouped
    _spends_without_a_sync(ctx, syncs, lambda nonce: replay.use_nonce(ctx, nonce, EXPIRES))


def test_a_kid_spend_asks_for_no_sync(
    grouped: tuple[RAContext, Account, Profile], syncs: _Syncs
) -> None:
    ctx, account, profile = grouped
    _spends_without_a_sync(
        ctx,
        syncs,
        lambda nonce: authenticate_kid(
            ctx, AccountCache(), profile, account.id, nonce, EXPIRES, lambda _: None
        ),
    )


def test_a_read_that_spends_asks_for_no_sync(
    grouped: tuple[RAContext, Account, Profile], syncs: _Syncs
) -> None:
    ctx, account, profile = grouped
    with ctx.db.write() as conn:
        order_id = new_order(conn, account).id
    authz_id = orders.get_order(ctx, account, order_id).order.authz_ids[0]
    for read in (
        lambda spend: orders.get_order(ctx, account, order_id, spend).order,
        lambda spend: orders.get_authz(ctx, account, authz_id, spend),
    ):
        # A read waits for the commits it could have seen: the last read's spend too.
        ctx.db.wait_durable()
        spend = _pending(account, profile)
        before = _settled(syncs)
        assert read(spend) is not None
        assert spend.spent
        assert _settled(syncs) == before


def test_a_write_that_spends_waits_for_its_sync(
    grouped: tuple[RAContext, Account, Profile], syncs: _Syncs
) -> None:
    ctx, account, profile = grouped
    spend = _pending(account, profile)
    before = syncs.calls
    with replay.write_spending(ctx, spend):
        pass
    # Returned only after the sync of its commit, which carries the spend.
    assert syncs.calls > before
