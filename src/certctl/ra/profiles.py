"""Certificate profiles: the default one, and create/update for the CLI and API."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from certctl.config import is_valid_profile_id
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found
from certctl.domain.model import EKU_NAMES, KEY_ALGORITHMS, AuthMode, Profile
from certctl.domain.policy import IdentifierPolicy
from certctl.policy.identifiers import validate_networks, validate_patterns
from certctl.ra.context import RAContext
from certctl.storage import audit_log, inventory

MAX_VALIDITY_DAYS_LIMIT = 3650
MAX_IDENTIFIERS_LIMIT = 1000


def validate_profile(profile: Profile, issuer_ids: list[str]) -> None:
    if not is_valid_profile_id(profile.id):
        raise malformed("profile id must be 1-63 of a-z, 0-9, '-' and '_'")
    if profile.issuer_id not in issuer_ids:
        raise malformed(f"unknown issuer {profile.issuer_id!r} (known: {', '.join(issuer_ids)})")
    unknown = [k for k in profile.key_algorithms if k not in KEY_ALGORITHMS]
    if unknown or not profile.key_algorithms:
        raise malformed(f"key algorithms must be among {', '.join(KEY_ALGORITHMS)}")
    if any(e not in EKU_NAMES for e in profile.ekus) or not profile.ekus:
        raise malformed(f"EKUs must be among {', '.join(EKU_NAMES)}")
    if not 1 <= profile.max_validity_days <= MAX_VALIDITY_DAYS_LIMIT:
        raise malformed(f"max validity must be 1..{MAX_VALIDITY_DAYS_LIMIT} days")
    policy = profile.identifier_policy
    validate_patterns(policy.allowed_names + policy.denied_names)
    validate_networks(policy.ip_networks)
    days = profile.renewal_window_days
    if days is not None and not 1 <= days <= profile.max_validity_days:
        raise malformed("renewal window days must be 1..max validity days")
    if not 1 <= policy.max_identifiers <= MAX_IDENTIFIERS_LIMIT:
        raise malformed(f"max identifiers must be 1..{MAX_IDENTIFIERS_LIMIT}")


POLICY_FIELDS = frozenset(f.name for f in fields(IdentifierPolicy))


def apply_changes(profile: Profile, changes: dict[str, Any]) -> Profile:
    """``changes`` names Profile fields, or IdentifierPolicy fields for the policy."""
    top = {k: v for k, v in changes.items() if k not in POLICY_FIELDS}
    policy = {k: v for k, v in changes.items() if k in POLICY_FIELDS}
    if "acme_auth_mode" in top:
        top["acme_auth_mode"] = AuthMode(top["acme_auth_mode"])
    if policy:
        top["identifier_policy"] = replace(profile.identifier_policy, **policy)
    return replace(profile, **top)


def ensure_default_profile(ctx: RAContext, profile_id: str, issuer_id: str) -> None:
    """First start: the default profile exists, bound to an explicit issuer."""
    now = ctx.clock()
    profile = Profile(
        id=profile_id,
        name="Default ACME profile",
        issuer_id=issuer_id,
        acme_auth_mode=ctx.settings.default_auth_mode,
        description="Created on first start",
    )
    with ctx.db.write() as conn:
        if inventory.insert_profile(conn, profile, now):
            audit_log.record(
                conn,
                at=now,
                actor="system",
                action="profile_created",
                object_type="profile",
                object_id=profile_id,
                details={"issuer_id": issuer_id},
            )


def get_profile(ctx: RAContext, profile_id: str) -> Profile:
    with ctx.db.read() as conn:
        profile = inventory.get_profile(conn, profile_id)
    if profile is None:
        raise not_found(f"no profile {profile_id[:64]!r}")
    return profile


def list_profiles(ctx: RAContext) -> list[Profile]:
    with ctx.db.read() as conn:
        return inventory.list_profiles(conn)


def create_profile(ctx: RAContext, profile: Profile, actor: str) -> Profile:
    now = ctx.clock()
    with ctx.db.write() as conn:
        validate_profile(profile, inventory.issuer_ids(conn))
        if not inventory.insert_profile(conn, profile, now):
            raise AcmeError(ProblemType.CONFLICT, f"profile {profile.id} already exists")
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="profile_created",
            object_type="profile",
            object_id=profile.id,
        )
    return profile


def update_profile(ctx: RAContext, profile_id: str, changes: dict[str, Any], actor: str) -> Profile:
    now = ctx.clock()
    with ctx.db.write() as conn:
        current = inventory.get_profile(conn, profile_id)
        if current is None:
            raise not_found(f"no profile {profile_id!r}")
        updated = apply_changes(current, changes)
        validate_profile(updated, inventory.issuer_ids(conn))
        inventory.update_profile(conn, updated, now)
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="profile_updated",
            object_type="profile",
            object_id=profile_id,
            details={k: str(v) for k, v in changes.items()},
        )
    return updated
