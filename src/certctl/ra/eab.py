"""External account binding (RFC 8555 §7.3.4): issuing keys, and binding a new account."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection

from certctl.acme.b64 import b64url_encode
from certctl.acme.eab import parse_binding, verify_binding
from certctl.acme.jwk import PublicJWK
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found, unauthorized
from certctl.domain.model import Profile
from certctl.policy.identifiers import validate_patterns
from certctl.ra.context import RAContext
from certctl.storage import audit_log, inventory
from certctl.storage import eab as store
from certctl.storage.eab import EabKey

HMAC_KEY_BYTES = 32
# Every kid is made by create_key: "kid-" and base64url. Text outside that alphabet names
# no key, and is not asked of the store: PostgreSQL refuses a NUL in text (a 500 where
# SQLite answers "unknown ... key id").
_KID = re.compile(r"[A-Za-z0-9_-]+")


def create_key(
    ctx: RAContext,
    *,
    profile_ids: tuple[str, ...],
    reusable: bool,
    expires_in: timedelta | None,
    allowed_names: tuple[str, ...],
    description: str,
    actor: str,
) -> tuple[EabKey, str]:
    """A new kid and MAC key; the key (base64url) is returned once and never shown again."""
    if not profile_ids:
        raise malformed("an EAB key must be bound to at least one profile")
    validate_patterns(allowed_names)
    now = ctx.clock()
    key = EabKey(
        kid="kid-" + secrets.token_urlsafe(12),
        hmac_key=secrets.token_bytes(HMAC_KEY_BYTES),
        profile_ids=profile_ids,
        reusable=reusable,
        uses=0,
        revoked=False,
        allowed_names=allowed_names,
        description=description,
        expires_at=now + expires_in if expires_in else None,
        created_at=now,
        last_used_at=None,
    )
    with ctx.db.write() as conn:
        for profile_id in profile_ids:
            if inventory.get_profile(conn, profile_id) is None:
                raise not_found(f"no profile {profile_id!r}")
        store.insert(conn, key)
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="eab_key_created",
            object_type="eab_key",
            object_id=key.kid,
            details={"profiles": list(profile_ids), "reusable": reusable},
        )
    return key, b64url_encode(key.hmac_key)


def list_keys(ctx: RAContext) -> list[EabKey]:
    with ctx.db.read() as conn:
        return store.list_keys(conn)


def revoke_key(ctx: RAContext, kid: str, actor: str) -> None:
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not store.revoke(conn, kid):
            raise not_found(f"no EAB key {kid!r}")
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="eab_key_revoked",
            object_type="eab_key",
            object_id=kid,
        )


def eab_required(ctx: RAContext, profile: Profile) -> bool:
    return ctx.settings.eab_required or profile.eab_required


def check_binding(
    ctx: RAContext, profile: Profile, jwk: PublicJWK, binding: object, url: str
) -> EabKey | None:
    """Verify a binding before the account exists; ``bind`` then spends it in the account's
    transaction. Missing-but-required is externalAccountRequired."""
    if binding is None:
        if eab_required(ctx, profile):
            raise AcmeError(
                ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
                "this profile requires an external account binding (RFC 8555 §7.3.4)",
            )
        return None
    parsed = parse_binding(binding, account_jwk=jwk, url=url)
    key = _stored_key(ctx, parsed.kid)
    if key is None:
        raise unauthorized("unknown external account binding key id")
    verify_binding(parsed, key.hmac_key)  # MAC first: never reveal a kid's state unauthenticated
    now = ctx.clock()
    if key.revoked or (key.expires_at is not None and key.expires_at <= now):
        raise unauthorized("external account binding key is revoked or expired")
    if profile.id not in key.profile_ids:
        raise unauthorized("external account binding key is not valid for this profile")
    if not key.reusable and key.uses > 0:
        raise unauthorized("external account binding key has already been used")
    return key


def _stored_key(ctx: RAContext, kid: str) -> EabKey | None:
    if _KID.fullmatch(kid) is None:
        return None
    with ctx.db.read() as conn:
        return store.get(conn, kid)


def bind(conn: Connection, key: EabKey, now: datetime) -> None:
    """Spend one use inside the account-creation transaction (compare-and-set), so a
    single-use key binds exactly one account even when two registrations race."""
    if not store.consume(conn, key.kid, now):
        raise unauthorized("external account binding key has already been used")
