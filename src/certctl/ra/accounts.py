"""Accounts: registration, lookup for kid, contact update, deactivation (RFC 8555 §7.3)."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from threading import Lock
from typing import Any

from sqlalchemy.exc import IntegrityError

from certctl.acme.jwk import PublicJWK, spki_sha256
from certctl.domain.errors import AcmeError, ProblemType, malformed, unauthorized
from certctl.domain.lifecycle import require_transition
from certctl.domain.model import Account, AccountStatus, Profile
from certctl.ra import eab
from certctl.ra.context import RAContext, actor_for, new_id
from certctl.ra.ratelimits import RateLimits
from certctl.ra.replay import spend_nonce
from certctl.storage import accounts as store
from certctl.storage import audit_log, nonces, revocations
from certctl.storage import orders as order_store

MAX_CONTACTS = 10
# A deliberately plain addr-spec: one address, no display name, no hfields (RFC 6068 §2).
# Used with fullmatch: "$" would also match before a final newline ("mailto:a@b.com\n").
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)


def parse_contacts(raw: object) -> tuple[str, ...]:
    """RFC 8555 §7.3: contacts are URLs; we support ``mailto:`` with one address."""
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise malformed("contact must be an array of strings")
    if len(raw) > MAX_CONTACTS:
        raise AcmeError(ProblemType.INVALID_CONTACT, f"at most {MAX_CONTACTS} contacts")
    contacts: list[str] = []
    for item in raw:
        scheme, _, address = item.partition(":")
        if scheme.lower() != "mailto":
            raise AcmeError(ProblemType.UNSUPPORTED_CONTACT, "only mailto: contacts are supported")
        if not _EMAIL.fullmatch(address) or ".." in address.partition("@")[2]:
            raise AcmeError(ProblemType.INVALID_CONTACT, f"{item[:100]!r} is not a mailto address")
        contacts.append(f"mailto:{address}")
    return tuple(contacts)


def _optional_bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise malformed(f"{name} must be a boolean")
    return value


def new_account(
    ctx: RAContext,
    profile: Profile,
    jwk: PublicJWK,
    payload: dict[str, Any],
    url: str,
    limits: RateLimits | None = None,
    client_address: str | None = None,
) -> tuple[Account, bool]:
    """Returns (account, created). An existing key returns its account (§7.3.1); only a
    created account counts against the client address's new-accounts limit."""
    only_existing = _optional_bool(payload, "onlyReturnExisting")
    with ctx.db.read() as conn:
        existing = store.get_by_thumbprint(conn, profile.id, jwk.thumbprint)
    if existing is not None:
        return _existing(existing), False
    if only_existing:
        raise AcmeError(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
    with ctx.db.read() as conn:
        if revocations.key_blocked(conn, spki_sha256(jwk.key)):
            # RFC 8555 §7.6: a key revoked for keyCompromise may not become an account key.
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "that key is blocked (compromised)")
    contacts = parse_contacts(payload.get("contact", []))
    agreed = _optional_bool(payload, "termsOfServiceAgreed")
    if ctx.settings.tos_url and not agreed:
        # RFC 8555 §7.3: with a ToS in the directory, registration requires agreement.
        raise malformed("you must agree to the terms of service (termsOfServiceAgreed)")
    binding = eab.check_binding(ctx, profile, jwk, payload.get("externalAccountBinding"), url)
    (limits or RateLimits.disabled()).new_account(client_address, profile.id)
    account = Account(
        id=new_id("acct-"),
        profile_id=profile.id,
        status=AccountStatus.VALID,
        jwk_json=json.dumps(jwk.to_dict(), sort_keys=True, separators=(",", ":")),
        thumbprint=jwk.thumbprint,
        contact=contacts,
        tos_agreed=agreed,
        created_at=ctx.clock(),
        eab_kid=binding.kid if binding else None,
    )
    try:
        with ctx.db.write() as conn:
            if binding is not None:
                eab.bind(conn, binding, account.created_at)
            store.insert(conn, account, spki_sha256=spki_sha256(jwk.key))
            audit_log.record(
                conn,
                at=account.created_at,
                actor=actor_for(account.id),
                action="acme_account_created",
                object_type="acme_account",
                object_id=account.id,
                details={
                    "profile_id": profile.id,
                    "jwk_thumbprint": jwk.thumbprint,
                    "contact_count": len(contacts),
                    "tos_agreed": agreed,
                    "eab_kid": account.eab_kid,
                },
            )
    except IntegrityError:
        # A concurrent registration of the same key won; answer as for an existing key.
        with ctx.db.read() as conn:
            winner = store.get_by_thumbprint(conn, profile.id, jwk.thumbprint)
        if winner is None:
            raise
        return _existing(winner), False
    return account, True


def _existing(account: Account) -> Account:
    if account.status is not AccountStatus.VALID:
        raise unauthorized(f"account is {account.status.value}")
    return account


def account_for_kid(ctx: RAContext, profile: Profile, account_id: str) -> Account:
    """RFC 8555 §6.2: kid must name an existing, valid account of this profile."""
    with ctx.db.read() as conn:
        account = store.get(conn, account_id)
    return _usable_for_kid(account, profile)


def _usable_for_kid(account: Account | None, profile: Profile) -> Account:
    if account is None:
        raise AcmeError(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no such account")
    if account.profile_id != profile.id:
        raise unauthorized("account belongs to another profile")
    if account.status is not AccountStatus.VALID:
        raise unauthorized(f"account is {account.status.value}")
    return account


class AccountCache:
    """Accounts by id, per process, so that a kid's key is found without a transaction of
    its own. Never trusted alone: ``authenticate_kid`` confirms the cached key against the
    stored row in the transaction that spends the nonce."""

    def __init__(self, size: int = 10_000) -> None:
        self._items: OrderedDict[str, Account] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, account_id: str) -> Account | None:
        with self._lock:
            hit = self._items.get(account_id)
            if hit is not None:
                self._items.move_to_end(account_id)
            return hit

    def put(self, account: Account) -> None:
        with self._lock:
            self._items[account.id] = account
            self._items.move_to_end(account.id)
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, account_id: str) -> None:
        with self._lock:
            self._items.pop(account_id, None)


def authenticate_kid(
    ctx: RAContext,
    cache: AccountCache,
    profile: Profile,
    account_id: str,
    nonce: str,
    nonce_expires_at: datetime,
    verify: Callable[[Account], None],
) -> Account:
    """RFC 8555 §6.2 and §6.5 for a kid-signed request.

    ``verify`` checks the JWS signature with the account's key (raising if it fails); it
    runs outside any transaction, so nothing is spent on a forged request. Then the stored
    row must still hold the key that verified, be valid and be of this profile (a key
    rollover or deactivation on another replica is seen here), and the nonce is spent:
    first as one statement that does both (the common case, one round trip), and when
    that records nothing, in a transaction that reads the row to tell a spent nonce from
    a changed account. A stale cached key is replaced and the signature checked again
    with the stored one.

    The account returned is the one whose key and status were just confirmed; its other
    fields (contacts) may be as cached. Whoever shows them reads the row afresh.
    """
    known = verified_kid(ctx, cache, profile, account_id, verify)
    return spend_for_kid(ctx, cache, profile, known, nonce, nonce_expires_at, verify)


def verified_kid(
    ctx: RAContext,
    cache: AccountCache,
    profile: Profile,
    account_id: str,
    verify: Callable[[Account], None],
) -> Account:
    """The kid's account (cached, else read and then cached) whose key verified the
    signature; nothing is spent and, with the account cached, nothing is read. A cached
    key that fails is dropped and the stored one tried. Caching before any spend is safe:
    whoever spends the nonce confirms the key against the stored row then (``consume``
    of ra.replay, ``spend_for_kid``)."""
    cached = cache.get(account_id)
    if cached is not None:
        known = _usable_for_kid(cached, profile)
        try:
            verify(known)
        except AcmeError:
            cache.drop(account_id)  # it may be stale (rolled over elsewhere)
        else:
            return known
    known = account_for_kid(ctx, profile, account_id)
    verify(known)
    cache.put(known)
    return known


def spend_for_kid(
    ctx: RAContext,
    cache: AccountCache,
    profile: Profile,
    known: Account,
    nonce: str,
    nonce_expires_at: datetime,
    verify: Callable[[Account], None],
) -> Account:
    """Spend the nonce of a request ``known``'s key verified, confirming in the same
    statement (or transaction) that the stored account still has that key and is usable;
    see authenticate_kid."""
    for _ in range(3):
        # Only reads besides the spend: see ra.replay.use_nonce for promised=False.
        with ctx.db.statement(promised=False) as conn:
            spent = nonces.consume_for_account(
                conn,
                nonce,
                nonce_expires_at,
                account_id=known.id,
                profile_id=profile.id,
                jwk_json=known.jwk_json,
                lazy=True,
            )
        if spent:
            cache.put(known)
            return known
        with ctx.db.write(promised=False) as conn:
            current = store.get(conn, known.id)
            confirmed = current is not None and current.jwk_json == known.jwk_json
            if confirmed:
                # Raising here rolls back: a refused account spends no nonce.
                current = _usable_for_kid(current, profile)
                spend_nonce(conn, nonce, nonce_expires_at, lazy=True)
        if confirmed and current is not None:
            cache.put(current)
            return current
        cache.drop(known.id)
        known = _usable_for_kid(current, profile)
        verify(known)  # the stored key, changed since: the signature must fit it
    raise unauthorized("the account key changed while the request was checked; retry")


def update_account(ctx: RAContext, account: Account, payload: dict[str, Any]) -> Account:
    """RFC 8555 §7.3.2 (contact update) and §7.3.6 (deactivation)."""
    status = payload.get("status")
    if status == AccountStatus.DEACTIVATED.value:
        return _deactivate(ctx, account)
    # Clients echo the account object back to update contacts (certbot sends its current
    # "status": "valid" along): the status it already has is no change (as Boulder and
    # Pebble do). Any other value is not the client's to set (RFC 8555 §7.3.6).
    if status is not None and status != account.status.value:
        raise malformed("the only status a client may set is deactivated")
    if "contact" in payload:
        contacts = parse_contacts(payload["contact"])
        now = ctx.clock()
        with ctx.db.write() as conn:
            if not store.set_contact(conn, account.id, contacts, now):
                raise unauthorized("account is no longer valid")
            audit_log.record(
                conn,
                at=now,
                actor=actor_for(account.id),
                action="acme_account_updated",
                object_type="acme_account",
                object_id=account.id,
                details={"contact_count": len(contacts)},
            )
    return _reload(ctx, account.id)  # as stored: the caller's copy may be a cached one


def _deactivate(ctx: RAContext, account: Account) -> Account:
    require_transition(account.status, AccountStatus.DEACTIVATED)
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not store.set_status(
            conn, account.id, AccountStatus.VALID, AccountStatus.DEACTIVATED, now
        ):
            raise unauthorized("account is no longer valid")
        dropped = order_store.deactivate_pending_authzs(conn, account.id)
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_account_deactivated",
            object_type="acme_account",
            object_id=account.id,
            details={"pending_authorizations_deactivated": dropped},
        )
    return _reload(ctx, account.id)


def _reload(ctx: RAContext, account_id: str) -> Account:
    with ctx.db.read() as conn:
        account = store.get(conn, account_id)
    if account is None:  # pragma: no cover - accounts are never deleted
        raise AcmeError(ProblemType.SERVER_INTERNAL, "account vanished")
    return account
