"""kid authentication with the per-process account cache (ra.accounts.authenticate_kid).

The cache only saves a lookup: a key rolled over or an account deactivated by another
replica is seen by the statement that spends the nonce, and a refused request spends no
nonce. Each test plays "another replica" by changing the row behind the cache's back.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import event

from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType, unauthorized
from certctl.domain.model import Account, AccountStatus, Profile
from certctl.ra.accounts import AccountCache, authenticate_kid, update_account, verified_kid
from certctl.ra.context import RAContext
from certctl.storage import accounts as store
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, new_account, seed_profile

EXPIRES = NOW + timedelta(minutes=5)


class Signed:
    """A request signed with the key whose JSON is ``key``: verification succeeds only
    against that stored key, as a real signature would. Counts verifications."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.checked: list[str] = []

    def __call__(self, stored: Account) -> None:
        self.checked.append(stored.jwk_json)
        if stored.jwk_json != self.key:
            raise unauthorized("JWS signature is invalid")


def _setup(db: Database) -> tuple[RAContext, Profile, Account, AccountCache]:
    with db.write() as conn:
        profile = seed_profile(conn)
        account = new_account(conn)
    return RAContext(db, lambda: NOW, AcmeServerSettings()), profile, account, AccountCache()


def _auth(
    ctx: RAContext, cache: AccountCache, profile: Profile, account: Account, signed: Signed
) -> tuple[Account, str]:
    nonce = secrets.token_urlsafe(16)
    return authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, signed), nonce


def _rollover(db: Database, account: Account, new_key: str) -> None:
    with db.write() as conn:
        assert store.swap_key(
            conn,
            account.id,
            old_thumbprint=account.thumbprint,
            jwk_json=new_key,
            thumbprint=secrets.token_hex(16),
            spki_sha256=secrets.token_hex(32),
            now=NOW,
        )


def test_nonce_is_spent_once_and_the_cache_is_filled(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    got, nonce = _auth(ctx, cache, profile, account, Signed(account.jwk_json))
    assert got.id == account.id and cache.get(account.id) == got
    with pytest.raises(AcmeError) as err:
        authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed(got.jwk_json))
    assert err.value.type is ProblemType.BAD_NONCE


def test_old_key_is_refused_after_a_rollover_elsewhere_and_spends_no_nonce(
    db: Database,
) -> None:
    ctx, profile, account, cache = _setup(db)
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))  # cached with the old key
    new_key = '{"kty":"OKP","x":"new"}'
    _rollover(db, account, new_key)
    nonce = secrets.token_urlsafe(16)
    with pytest.raises(AcmeError) as err:
        authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed(account.jwk_json))
    assert err.value.type is ProblemType.UNAUTHORIZED
    # The refused request did not spend its nonce: the owner of the new key may use it.
    got = authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed(new_key))
    assert got.jwk_json == new_key


def test_new_key_is_accepted_although_the_cache_holds_the_old_one(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))
    new_key = '{"kty":"OKP","x":"new"}'
    _rollover(db, account, new_key)
    signed = Signed(new_key)
    got, _ = _auth(ctx, cache, profile, account, signed)
    assert got.jwk_json == new_key and cache.get(account.id) == got
    assert signed.checked == [account.jwk_json, new_key]  # stale key tried, then the stored


def test_rollover_between_verification_and_commit_is_caught(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key changes after the signature was checked with the old one but before the
    nonce is spent: the transaction sees the new row and the request is not accepted
    with the key that signed it."""
    ctx, profile, account, cache = _setup(db)
    new_key = '{"kty":"OKP","x":"new"}'
    signed = Signed(account.jwk_json)

    def verify_then_rollover(stored: Account) -> None:
        signed(stored)
        if len(signed.checked) == 1:
            _rollover(db, account, new_key)

    with pytest.raises(AcmeError) as err:
        authenticate_kid(
            ctx,
            cache,
            profile,
            account.id,
            "n-" + secrets.token_hex(8),
            EXPIRES,
            verify_then_rollover,
        )
    assert err.value.type is ProblemType.UNAUTHORIZED
    assert signed.checked == [account.jwk_json, new_key]
    assert cache.get(account.id) is None


def test_account_deactivated_elsewhere_is_refused_and_spends_no_nonce(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))
    with db.write() as conn:
        assert store.set_status(
            conn, account.id, AccountStatus.VALID, AccountStatus.DEACTIVATED, NOW
        )
    nonce = secrets.token_urlsafe(16)
    with pytest.raises(AcmeError) as err:
        authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed(account.jwk_json))
    assert err.value.type is ProblemType.UNAUTHORIZED
    assert "deactivated" in err.value.detail
    with db.read() as conn:
        assert store.get(conn, account.id) is not None
    # The nonce was not spent: another (valid) account can still use it.
    with db.write() as conn:
        other = new_account(conn)
    authenticate_kid(ctx, cache, profile, other.id, nonce, EXPIRES, Signed(other.jwk_json))


def test_bad_signature_spends_no_nonce(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    nonce = secrets.token_urlsafe(16)
    with pytest.raises(AcmeError):
        authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed("forged"))
    authenticate_kid(ctx, cache, profile, account.id, nonce, EXPIRES, Signed(account.jwk_json))


def test_unknown_kid_and_other_profile(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    with pytest.raises(AcmeError) as err:
        authenticate_kid(
            ctx, cache, profile, "acct-missing", "n1", EXPIRES, Signed(account.jwk_json)
        )
    assert err.value.type is ProblemType.ACCOUNT_DOES_NOT_EXIST
    with db.write() as conn:
        other_profile = seed_profile(conn, "other")
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))  # now cached
    with pytest.raises(AcmeError) as err:
        authenticate_kid(
            ctx, cache, other_profile, account.id, "n2", EXPIRES, Signed(account.jwk_json)
        )
    assert err.value.type is ProblemType.UNAUTHORIZED


def test_a_cached_account_is_confirmed_and_its_nonce_spent_in_one_statement(
    db: Database,
) -> None:
    ctx, profile, account, cache = _setup(db)
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))  # now cached
    statements: list[str] = []

    def seen(_c: object, _cur: object, statement: str, *_rest: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT")):
            statements.append(statement.split(maxsplit=1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        _auth(ctx, cache, profile, account, Signed(account.jwk_json))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert statements == ["INSERT"]


def test_a_deferred_request_fills_the_cache_too(db: Database) -> None:
    """newOrder, finalize and the reads verify without spending (ra.replay): the account
    they read is cached, so the next request of that account reads nothing."""
    ctx, profile, account, cache = _setup(db)
    got = verified_kid(ctx, cache, profile, account.id, Signed(account.jwk_json))
    assert cache.get(account.id) == got
    statements: list[str] = []

    def seen(_c: object, _cur: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        verified_kid(ctx, cache, profile, account.id, Signed(account.jwk_json))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert statements == []


def test_a_refused_account_is_not_cached(db: Database) -> None:
    ctx, profile, account, cache = _setup(db)
    with pytest.raises(AcmeError):
        verified_kid(ctx, cache, profile, account.id, Signed("forged"))
    assert cache.get(account.id) is None


def test_contacts_changed_elsewhere_are_read_as_stored(db: Database) -> None:
    """Authentication confirms key and status only: a cached copy may carry old contacts,
    so what shows an account (update_account, even with nothing to change) reads it."""
    ctx, profile, account, cache = _setup(db)
    _auth(ctx, cache, profile, account, Signed(account.jwk_json))  # now cached
    with db.write() as conn:
        assert store.set_contact(conn, account.id, ("mailto:new@example.org",), NOW)
    got, _ = _auth(ctx, cache, profile, account, Signed(account.jwk_json))
    assert update_account(ctx, got, {}).contact == ("mailto:new@example.org",)
