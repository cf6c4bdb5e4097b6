"""The registration authority: the only writer of ACME state. The web front end makes one
call here per request; this facade hands each to the module that owns it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from time import monotonic
from typing import Any

from sqlalchemy.exc import OperationalError

from certctl.acme.ari import Window
from certctl.acme.jwk import PublicJWK, spki_sha256
from certctl.acme.nonce import NonceCodec
from certctl.ca import LocalCA
from certctl.domain.errors import not_found
from certctl.domain.model import Account, Authorization, Challenge, Profile
from certctl.ra import (
    accounts,
    ari,
    challenges,
    finalize,
    keychange,
    orders,
    profiles,
    replay,
    revocation,
    revoke_cert,
)
from certctl.ra.context import RAContext
from certctl.ra.orders import OrderView
from certctl.ra.ratelimits import RateLimits
from certctl.storage import durable
from certctl.storage.durable import Hold

# Hold is the front end's too (wfe may not import storage).
__all__ = ["PROFILE_CACHE_SECONDS", "Hold", "RegistrationAuthority"]

PROFILE_CACHE_SECONDS = 1.0


class RegistrationAuthority:
    def __init__(
        self,
        ctx: RAContext,
        ca: LocalCA,
        nonce_codec: NonceCodec,
        validator: challenges.Validator | None = None,
        *,
        limits: RateLimits | None = None,
    ) -> None:
        self.ctx = ctx
        # ACME rate limits; the default limits nothing (tools and tests that build an RA).
        self.limits = limits or RateLimits.disabled()
        self.ca = ca
        self.validator = validator
        # After-commit steps of the revocation pipeline (OCSP refresh, CRL regeneration).
        self.revocation_hooks: list[revocation.RevocationHook] = []
        self.nonces = nonce_codec
        # Every ACME answer mints a nonce: the codec's own method, without a frame of ours.
        self.new_nonce: Callable[[], str] = nonce_codec.issue
        self._profiles: dict[str, tuple[float, Profile]] = {}
        self._accounts = accounts.AccountCache()

    @staticmethod
    def hold_commits() -> AbstractContextManager[Hold]:
        """For one request: its reads and writes do not wait for the disk one by one; its
        answer waits once, for ``hold.pending()`` on the event loop or ``hold.wait()`` on
        a handler thread."""
        return durable.hold()

    # -- nonces (RFC 8555 §6.5) -------------------------------------------------------
    def check_nonce(self, nonce: str) -> datetime:
        """Authenticity and expiry only (stateless, cheap); see use_nonce."""
        return self.nonces.check(nonce)

    def use_nonce(self, nonce: str, expires_at: datetime) -> None:
        replay.use_nonce(self.ctx, nonce, expires_at)

    # -- profiles -----------------------------------------------------------------------
    def cached_acme_profile(self, profile_id: str) -> Profile | None:
        """The profile if it is cached, fresh and enabled; None means ask acme_profile
        (which may read the store). Never touches the store, so the event loop may call it."""
        hit = self._profiles.get(profile_id)
        if hit is None or monotonic() - hit[0] >= PROFILE_CACHE_SECONDS or not hit[1].enabled:
            return None
        return hit[1]

    def acme_profile(self, profile_id: str) -> Profile:
        """The profile of a request, cached for PROFILE_CACHE_SECONDS: every ACME request
        needs it, and a changed mode or a disabled profile still applies within a second."""
        now = monotonic()
        hit = self._profiles.get(profile_id)
        if hit is not None and now - hit[0] < PROFILE_CACHE_SECONDS:
            profile = hit[1]
        else:
            try:
                profile = profiles.get_profile(self.ctx, profile_id)
            except OperationalError:
                if hit is None:
                    raise
                # The database is unreachable: a known profile keeps the directory and
                # newNonce (which need nothing else from it) answering during the outage.
                profile = hit[1]
            else:
                if len(self._profiles) > 1024:  # ids come from URLs: keep the cache bounded
                    self._profiles.clear()
                self._profiles[profile_id] = (now, profile)
        if not profile.enabled:
            raise not_found(f"profile {profile_id} is disabled")
        return profile

    # -- accounts -----------------------------------------------------------------------
    def new_account(
        self,
        profile: Profile,
        jwk: PublicJWK,
        payload: dict[str, Any],
        url: str,
        *,
        client_address: str | None = None,
    ) -> tuple[Account, bool]:
        """``client_address``: the request's peer, for the new-accounts-per-address limit."""
        return accounts.new_account(
            self.ctx, profile, jwk, payload, url, self.limits, client_address
        )

    def account_for_kid(self, profile: Profile, account_id: str) -> Account:
        return accounts.account_for_kid(self.ctx, profile, account_id)

    def authenticate_kid(
        self,
        profile: Profile,
        account_id: str,
        nonce: str,
        nonce_expires_at: datetime,
        verify: Callable[[Account], None],
    ) -> Account:
        """The kid's account, its key confirmed and the nonce spent in one transaction."""
        return accounts.authenticate_kid(
            self.ctx, self._accounts, profile, account_id, nonce, nonce_expires_at, verify
        )

    def verified_kid(
        self, profile: Profile, account_id: str, verify: Callable[[Account], None]
    ) -> Account:
        """The kid's account whose key verified the request; nothing spent (ra.replay)."""
        return accounts.verified_kid(self.ctx, self._accounts, profile, account_id, verify)

    def spend_for_kid(
        self,
        profile: Profile,
        account: Account,
        nonce: str,
        nonce_expires_at: datetime,
        verify: Callable[[Account], None],
    ) -> Account:
        """Spend the nonce of a request ``account``'s key verified, confirming the account."""
        return accounts.spend_for_kid(
            self.ctx, self._accounts, profile, account, nonce, nonce_expires_at, verify
        )

    def update_account(self, account: Account, payload: dict[str, Any]) -> Account:
        return accounts.update_account(self.ctx, account, payload)

    # -- orders -------------------------------------------------------------------------
    def new_order(
        self,
        profile: Profile,
        account: Account,
        payload: dict[str, Any],
        spend: replay.PendingSpend | None = None,
    ) -> OrderView:
        issuer = self.ca.issuers.get(profile.issuer_id)
        until = issuer.not_after if issuer is not None else None
        return orders.new_order(self.ctx, profile, account, payload, self.limits, spend, until)

    def order(
        self, account: Account, order_id: str, spend: replay.PendingSpend | None = None
    ) -> OrderView:
        return orders.get_order(self.ctx, account, order_id, spend)

    def list_orders(self, account: Account, cursor: str | None) -> tuple[list[str], str | None]:
        return orders.list_orders(self.ctx, account, cursor)

    def authz(
        self, account: Account, authz_id: str, spend: replay.PendingSpend | None = None
    ) -> Authorization:
        return orders.get_authz(self.ctx, account, authz_id, spend)

    def respond_challenge(
        self, account: Account, challenge_id: str, *, poll: bool = False
    ) -> tuple[Challenge, Authorization]:
        return challenges.respond(
            self.ctx, self.validator, account, challenge_id, self.limits, poll=poll
        )

    def recover_validations(self) -> int:
        return challenges.recover_stale(self.ctx, self.validator) if self.validator else 0

    def finalize(
        self,
        profile: Profile,
        account: Account,
        order_id: str,
        payload: dict[str, Any],
        spend: replay.PendingSpend | None = None,
    ) -> OrderView:
        return finalize.finalize(
            self.ctx, self.ca, self.validator, profile, account, order_id, payload, spend
        )

    def update_authz(
        self, account: Account, authz_id: str, payload: dict[str, Any]
    ) -> Authorization:
        return orders.update_authz(self.ctx, account, authz_id, payload)

    def new_authz(
        self, profile: Profile, account: Account, payload: dict[str, Any]
    ) -> Authorization:
        return orders.new_authz(self.ctx, profile, account, payload)

    def key_change(
        self,
        account: Account,
        account_url: str,
        outer_url: str,
        inner: bytes,
        url_of: Callable[[str], str],
    ) -> Account:
        return keychange.key_change(
            self.ctx, account, account_url, outer_url, inner, url_of, self.limits
        )

    def revoke_cert(self, account: Account | None, jwk: PublicJWK, payload: dict[str, Any]) -> None:
        revoke_cert.revoke_cert(self.ctx, account, jwk, payload, self.revocation_hooks)

    def renewal_info(self, cert_id: str) -> Window:
        return ari.renewal_info(self.ctx, cert_id)

    def key_blocked(self, jwk: PublicJWK) -> bool:
        return revocation.key_is_blocked(self.ctx, spki_sha256(jwk.key))

    def certificate_chain(
        self, account: Account, cert_id: str, spend: replay.PendingSpend | None = None
    ) -> str:
        return finalize.certificate_chain(self.ctx, account, cert_id, spend)
