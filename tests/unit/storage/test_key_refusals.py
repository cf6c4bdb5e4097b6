"""One round trip answers both refusals of a certificate key at finalize, alone or with
the order's read, and several audit rows go in with one driver call; on SQLite and
PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text

from certctl.storage import audit_log, issuance, orders, revocations
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, new_order, seed_profile


def test_a_key_is_refused_when_blocked_or_an_account_key(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        account_spki = conn.execute(
            text("SELECT key_spki_sha256 FROM acme_accounts WHERE id = :i"), {"i": account.id}
        ).scalar_one()
        revocations.block_key(conn, "b" * 64, serial="1f", now=NOW)
    with db.read() as conn:
        assert revocations.key_refusals(conn, "c" * 64) == (False, False)
        assert revocations.key_refusals(conn, "b" * 64) == (True, False)
        assert revocations.key_refusals(conn, account_spki) == (False, True)


def test_the_order_is_read_with_its_key_refusals(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        order_id = new_order(conn, account, ("b.example", "a.example")).id
        account_spki = conn.execute(
            text("SELECT key_spki_sha256 FROM acme_accounts WHERE id = :i"), {"i": account.id}
        ).scalar_one()
        revocations.block_key(conn, "b" * 64, serial="1f", now=NOW)
    with db.read() as conn:
        expected = orders.get_order(conn, order_id)
        assert expected is not None and len(expected[1]) == 2
        for spki, refusals in (
            ("c" * 64, (False, False)),
            ("b" * 64, (True, False)),
            (account_spki, (False, True)),
        ):
            assert issuance.order_and_key_refusals(conn, order_id, spki) == (expected, refusals)
        assert issuance.order_and_key_refusals(conn, "ord-none", "b" * 64) == (
            None,
            (False, False),
        )


def test_audit_rows_recorded_together_are_all_there(db: Database) -> None:
    events = [
        audit_log.event(
            at=NOW,
            actor="acme:a",
            action=f"act{i}",
            object_type="thing",
            object_id=f"t{i}",
            details={"i": i},
        )
        for i in range(3)
    ]
    with db.write() as conn:
        audit_log.record_many(conn, events)
    with db.read() as conn:
        rows = [audit_log.list_for(conn, "thing", f"t{i}") for i in range(3)]
    assert [r[0]["action"] for r in rows] == ["act0", "act1", "act2"]
    assert len({r[0]["id"] for r in rows}) == 3
