"""Orders, authorizations, challenges; the finalize gate is a compare-and-set."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from certctl.domain.model import AuthzStatus, ChallengeStatus, Identifier, OrderStatus
from certctl.storage import orders
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile

THREADS = 10


def test_order_round_trip(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        order = new_order(conn, account, ["b.example", "a.example"])
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
        assert orders.get_order(conn, "ord-missing") is None
    assert found is not None
    stored, authzs = found
    assert stored.identifiers == (Identifier("dns", "b.example"), Identifier("dns", "a.example"))
    assert stored.stored_status is OrderStatus.PENDING
    assert stored.expires_at == order.expires_at
    assert stored.created_at == NOW
    assert stored.not_before is None and stored.certificate_id is None
    assert len(stored.authz_ids) == 2
    assert authzs == [(AuthzStatus.VALID, NOW + timedelta(hours=24))] * 2
    with db.read() as conn:
        authz = orders.get_authz(conn, stored.authz_ids[0])
        assert authz is not None
        assert authz.identifier == Identifier("dns", "a.example")  # sorted by value
        (chall,) = authz.challenges
        assert chall.status is ChallengeStatus.PENDING
        assert orders.get_challenge(conn, chall.id) == chall
        assert orders.get_authz(conn, "authz-missing") is None
        assert orders.get_challenge(conn, "chall-missing") is None


def test_begin_processing_lets_exactly_one_of_ten_win(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        order = new_order(conn, new_account(conn))
    barrier = threading.Barrier(THREADS)

    def attempt(i: int) -> bool:
        barrier.wait(timeout=30)
        with db.write() as conn:
            return orders.begin_processing(conn, order.id, f"{i + 1:x}", NOW)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(attempt, range(THREADS)))
    assert results.count(True) == 1
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
    assert found is not None
    assert found[0].stored_status is OrderStatus.PROCESSING


def test_processing_transitions_are_compare_and_set(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        order = new_order(conn, new_account(conn))
        # Not processing yet: finishing is refused.
        assert not orders.finish_processing(conn, order.id, new=OrderStatus.VALID, now=NOW)
        assert orders.begin_processing(conn, order.id, "abc", NOW)
        assert not orders.begin_processing(conn, order.id, "def", NOW)
        assert orders.finish_processing(
            conn, order.id, new=OrderStatus.VALID, now=NOW, certificate_id="cert-1"
        )
        assert not orders.finish_processing(conn, order.id, new=OrderStatus.INVALID, now=NOW)
        assert not orders.begin_processing(conn, "ord-missing", "abc", NOW)
    with db.read() as conn:
        found = orders.get_order(conn, order.id)
    assert found is not None
    assert found[0].stored_status is OrderStatus.VALID
    assert found[0].certificate_id == "cert-1"


def test_order_listing_pages_by_creation_time_and_skips_invalid(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account, other = new_account(conn), new_account(conn)
        made = [new_order(conn, account, created_at=NOW + timedelta(seconds=i)) for i in range(5)]
        new_order(conn, other)
        failed = new_order(conn, account, created_at=NOW + timedelta(seconds=10))
        orders.begin_processing(conn, failed.id, "1", NOW)
        orders.finish_processing(conn, failed.id, new=OrderStatus.INVALID, now=NOW)
    with db.read() as conn:
        first = orders.list_order_ids(conn, account.id, after=None, limit=3)
        rest = orders.list_order_ids(conn, account.id, after=(first[-1][1], first[-1][0]), limit=3)
    assert [oid for oid, _ in first + rest] == [o.id for o in made]
    assert all(created.tzinfo is not None for _, created in first + rest)
