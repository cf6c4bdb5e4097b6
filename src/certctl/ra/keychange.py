"""Account key rollover (RFC 8555 §7.3.5).

The outer JWS was verified against the account's stored key by the front end. Here: the
inner JWS must carry a jwk (never a kid) and no nonce, have the outer url, verify with the
new key, name the account (outer kid) and the current key (oldKey). The new key must not
belong to another account or be blocked. The swap is compare-and-set on the old key, so of
two concurrent rollovers exactly one wins and the other gets 409.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.exc import IntegrityError

from certctl.acme.jwk import PublicJWK, spki_sha256
from certctl.acme.jws import parse_jws, verify_jws
from certctl.domain.errors import AcmeError, ProblemType, malformed, unauthorized
from certctl.domain.model import Account
from certctl.ra.context import RAContext, actor_for
from certctl.ra.ratelimits import RateLimits
from certctl.storage import accounts as store
from certctl.storage import audit_log, revocations


def _conflict(detail: str, location: str | None = None) -> AcmeError:
    headers = {"Location": location} if location else {}
    return AcmeError(ProblemType.CONFLICT, detail, headers=headers)


def key_change(
    ctx: RAContext,
    account: Account,
    account_url: str,
    outer_url: str,
    inner_body: bytes,
    url_of: Any,
    limits: RateLimits | None = None,
) -> Account:
    inner = parse_jws(inner_body, require_nonce=False)
    if inner.jwk is None or inner.kid is not None:
        raise malformed("the inner JWS must carry the new key as jwk, and no kid")
    if inner.nonce is not None:
        raise malformed("the inner JWS must not carry a nonce")
    if inner.url != outer_url:
        raise malformed("the inner JWS url must equal the outer url")
    verify_jws(inner, inner.jwk)  # proves possession of the new key
    body = inner.payload_json()
    if body.get("account") != account_url:
        raise unauthorized("the inner payload must name the account of the outer kid")
    old = PublicJWK.from_dict(body.get("oldKey"))
    if old.thumbprint != account.thumbprint:
        raise unauthorized("oldKey is not the account's current key")
    new = inner.jwk
    if new.thumbprint == account.thumbprint:
        raise malformed("the new key is the current key")
    spki = spki_sha256(new.key)
    now = ctx.clock()
    with ctx.db.read() as conn:
        if revocations.key_blocked(conn, spki):
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "that key is blocked (compromised)")
        other = store.get_by_thumbprint(conn, account.profile_id, new.thumbprint)
    if other is not None:
        raise _conflict("the new key already belongs to an account", url_of(other.id))
    (limits or RateLimits.disabled()).key_change(account.id, account.profile_id)
    new_json = json.dumps(new.to_dict(), sort_keys=True, separators=(",", ":"))
    try:
        with ctx.db.write() as conn:
            if not store.swap_key(
                conn,
                account.id,
                old_thumbprint=account.thumbprint,
                jwk_json=new_json,
                thumbprint=new.thumbprint,
                spki_sha256=spki,
                now=now,
            ):
                raise _conflict("the account key changed concurrently; retry")
            audit_log.record(
                conn,
                at=now,
                actor=actor_for(account.id),
                action="acme_account_key_rolled",
                object_type="acme_account",
                object_id=account.id,
                details={"old_thumbprint": account.thumbprint, "new_thumbprint": new.thumbprint},
            )
    except IntegrityError:
        raise _conflict("the new key already belongs to an account") from None
    with ctx.db.read() as conn:
        updated = store.get(conn, account.id)
    assert updated is not None
    return updated
