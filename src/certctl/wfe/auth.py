"""JWS request authentication, RFC 8555 §6.2-§6.5 in spec order.

parse (flattened JSON, strict base64url, alg allow-list, exactly one of jwk/kid, no b64/crit)
-> url equals the request URL exactly (§6.4) -> nonce authentic and unexpired (§6.5) ->
key: the embedded jwk only where the endpoint takes one, otherwise the stored key of the
kid's account, which must be valid and belong to this profile -> signature -> the nonce is
spent (single use, in the shared store, so it holds across workers, replicas and restarts).

``deferred`` authenticates a kid request whose operation spends the nonce itself, in its
first transaction (certctl.ra.replay): the signature is checked here as always, the
spend is carried along, and ``Authenticated.settle`` finishes what the operation did not.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from threading import Lock
from typing import TypeVar

from certctl.acme.jwk import PublicJWK
from certctl.acme.jws import ParsedJWS, parse_jws, verify_jws
from certctl.domain.errors import AcmeError, malformed, unauthorized
from certctl.domain.model import Account, Profile
from certctl.ra import RegistrationAuthority
from certctl.ra.replay import NonceRaceError, PendingSpend
from certctl.wfe.urls import AcmeUrls


class KeyKind(Enum):
    JWK = "jwk"  # newAccount
    KID = "kid"  # every other POST
    EITHER = "either"  # revoke-cert: the account (kid) or the certificate's key (jwk)


@dataclass(frozen=True)
class Authenticated:
    jws: ParsedJWS
    key: PublicJWK
    account: Account | None
    # A deferred kid request's nonce (ra.replay), and how to spend it the ordinary way.
    spend: PendingSpend | None = None
    spend_now: Callable[[], Account] | None = None

    def settle(self) -> Authenticated:
        """Spend the nonce now unless the operation did; raises what the ordinary spend
        would (badNonce, unauthorized). Returns this request as settled."""
        if self.spend is None or self.spend_now is None or not self.spend.claim():
            return self
        return replace(self, account=self.spend_now())


class _KeyCache:
    """Parsed stored keys by their canonical JSON: parsing is pure, so caching is safe."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, PublicJWK] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, jwk_json: str) -> PublicJWK:
        with self._lock:
            hit = self._items.get(jwk_json)
            if hit is not None:
                self._items.move_to_end(jwk_json)
                return hit
        key = PublicJWK.from_dict(json.loads(jwk_json))
        with self._lock:
            self._items[jwk_json] = key
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return key


_keys = _KeyCache()
log = logging.getLogger(__name__)


def authenticate(
    ra: RegistrationAuthority,
    profile: Profile,
    urls: AcmeUrls,
    request_url: str,
    body: bytes,
    kind: KeyKind,
) -> Authenticated:
    jws, nonce, nonce_expiry = _opened(ra, request_url, body)
    if kind is KeyKind.EITHER:
        kind = KeyKind.JWK if jws.jwk is not None else KeyKind.KID
    if kind is KeyKind.JWK:
        if jws.jwk is None:
            raise malformed("this endpoint requires a jwk, not a kid, in the protected header")
        verify_jws(jws, jws.jwk)
        ra.use_nonce(nonce, nonce_expiry)
        return Authenticated(jws, jws.jwk, None)
    kid, verify = _kid_of(jws)
    account = ra.authenticate_kid(
        profile, urls.account_id_from_kid(kid), nonce, nonce_expiry, verify
    )
    return Authenticated(jws, _keys.get(account.jwk_json), account)


T = TypeVar("T")


def deferred(
    ra: RegistrationAuthority,
    profile: Profile,
    urls: AcmeUrls,
    request_url: str,
    body: bytes,
    operation: Callable[[Authenticated], T],
) -> tuple[Authenticated, T]:
    """Authenticate a kid request and run ``operation``, which spends the nonce in its
    first transaction (ra.replay); the nonce is spent before anything is returned."""
    jws, nonce, nonce_expiry = _opened(ra, request_url, body)
    kid, verify = _kid_of(jws)
    account = ra.verified_kid(profile, urls.account_id_from_kid(kid), verify)
    auth = Authenticated(
        jws,
        _keys.get(account.jwk_json),
        account,
        PendingSpend(nonce, nonce_expiry, account.id, profile.id, account.jwk_json),
        lambda: ra.spend_for_kid(profile, account, nonce, nonce_expiry, verify),
    )
    try:
        result = operation(auth)
    except NonceRaceError:
        # Used elsewhere, or the account changed: nothing was committed. The ordinary
        # spend says which (and raises), or succeeds, and the operation runs again.
        auth = auth.settle()
        return auth, operation(auth)
    except Exception:
        try:
            auth.settle()
        except AcmeError as refused:
            raise refused from None  # a replayed or unauthorized request says so first
        except Exception:
            # The store failed twice (the operation, then this): the operation's error is
            # the one to answer; it committed nothing, so the nonce guards nothing yet.
            log.warning("nonce not spent after a failed operation", exc_info=True)
        raise
    return auth.settle(), result


def _opened(
    ra: RegistrationAuthority, request_url: str, body: bytes
) -> tuple[ParsedJWS, str, datetime]:
    """Parse (§6.2), check the url (§6.4) and the nonce's authenticity and age (§6.5):
    what every request goes through before any key is looked at."""
    jws = parse_jws(body)
    if jws.url != request_url:
        raise unauthorized("JWS header url does not match the request URL")
    assert jws.nonce is not None  # parse_jws requires it
    return jws, jws.nonce, ra.check_nonce(jws.nonce)


def _kid_of(jws: ParsedJWS) -> tuple[str, Callable[[Account], None]]:
    """The kid of a request that must carry one, and the check of its signature against
    the account's stored key, never one from the request (§6.2)."""
    if jws.kid is None:
        raise malformed("this endpoint requires a kid, not a jwk, in the protected header")

    def verify(stored: Account) -> None:
        verify_jws(jws, _keys.get(stored.jwk_json))

    return jws.kid, verify


def require_post_as_get(auth: Authenticated) -> None:
    """RFC 8555 §6.3: POST-as-GET has an empty payload."""
    if not auth.jws.is_post_as_get:
        raise malformed("this resource is read with POST-as-GET (empty payload)")
