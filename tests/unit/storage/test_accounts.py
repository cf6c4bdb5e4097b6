"""Account rows: one account per key per profile; status changes are compare-and-set."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy.exc import IntegrityError

from certctl.domain.model import AccountStatus
from certctl.storage import accounts
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, seed_profile


def test_account_round_trip(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn, thumbprint="tp-1")
    with db.read() as conn:
        assert accounts.get(conn, account.id) == account
        assert accounts.get_by_thumbprint(conn, "default", "tp-1") == account
        assert accounts.get_by_thumbprint(conn, "default", "tp-2") is None
        assert accounts.get(conn, "acct-missing") is None


def test_one_account_per_key_per_profile(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        seed_profile(conn, "corp")
        new_account(conn, thumbprint="same-key")
    with pytest.raises(IntegrityError), db.write() as conn:
        new_account(conn, thumbprint="same-key")
    # The same key may hold an account on another profile (separate URL family).
    with db.write() as conn:
        corp = new_account(conn, "corp", thumbprint="same-key")
    with db.read() as conn:
        assert accounts.get_by_thumbprint(conn, "corp", "same-key") == corp
        default = accounts.get_by_thumbprint(conn, "default", "same-key")
    assert default is not None and default.id != corp.id


def test_status_change_is_compare_and_set(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        valid, deactivated = AccountStatus.VALID, AccountStatus.DEACTIVATED
        assert accounts.set_status(conn, account.id, valid, deactivated, NOW)
        assert not accounts.set_status(conn, account.id, valid, deactivated, NOW)
        assert not accounts.set_contact(conn, account.id, ("mailto:x@example.com",), NOW)
    with db.read() as conn:
        found = accounts.get(conn, account.id)
    assert found is not None
    assert found.status is AccountStatus.DEACTIVATED
    assert found.contact == account.contact


def test_contact_update_on_a_valid_account(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        contacts = ("mailto:a@example.com", "mailto:b@example.com")
        assert accounts.set_contact(conn, account.id, contacts, NOW)
    with db.read() as conn:
        found = accounts.get(conn, account.id)
    assert found is not None and found.contact == contacts


def test_key_in_use_spans_profiles(db: Database) -> None:
    with db.write() as conn:
        seed_profile(conn)
        account = new_account(conn)
        accounts.insert(
            conn,
            replace(account, id="acct-spki", thumbprint="tp-x"),
            spki_sha256="ab" * 32,
        )
    with db.read() as conn:
        assert accounts.key_in_use(conn, "ab" * 32)
        assert not accounts.key_in_use(conn, "cd" * 32)
