"""Challenge validation (RFC 8555 §7.5.1, §8): start, complete, recover.

A challenge POST moves the challenge pending -> processing (compare-and-set: a concurrent
second POST starts no second validation), then hands it to the VA's bounded pools and
answers at once. The VA calls back from a worker thread; the result is written challenge ->
authorization in one transaction with its audit event. Order status is derived from the
authorizations, so nothing else needs writing. Validations left processing by a crash or a
killed replica are claimed again by ``recover_stale`` (compare-and-set on their start time).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from certctl.acme.problems import problem_document
from certctl.domain.errors import AcmeError, ProblemType, Subproblem
from certctl.domain.model import (
    Account,
    Authorization,
    AuthzStatus,
    Challenge,
    ChallengeStatus,
    Profile,
)
from certctl.ra.context import RAContext, actor_for
from certctl.ra.orders import get_challenge
from certctl.ra.ratelimits import RateLimits
from certctl.storage import accounts as account_store
from certctl.storage import audit_log, inventory
from certctl.storage import orders as store
from certctl.va import ValidationAuthority, ValidationRequest, ValidationResult

log = logging.getLogger(__name__)

Observer = Callable[[str, str], None]  # (challenge type, outcome)


@dataclass(frozen=True)
class Validator:
    """What the RA needs to validate: the VA, the CA's CAA identities, an observer."""

    va: ValidationAuthority
    caa_identities: tuple[str, ...]
    account_urls: Callable[[Account], tuple[str, ...]]
    observe: Observer


def respond(
    ctx: RAContext,
    validator: Validator | None,
    account: Account,
    challenge_id: str,
    limits: RateLimits | None = None,
    *,
    poll: bool = False,
) -> tuple[Challenge, Authorization]:
    """``poll``: a POST-as-GET, which only reads the challenge (RFC 8555 §6.3): it neither
    starts a validation nor counts against the responses-per-hour limit. Only a response
    (``{}``, §7.5.1) says the client is ready; a read before its answer is in place must
    not cost it the authorization."""
    challenge, authz = get_challenge(ctx, account, challenge_id)
    if poll:
        return challenge, authz
    limits = limits or RateLimits.disabled()
    limits.challenge_respond(challenge.id, account.id, account.profile_id)
    if challenge.status is not ChallengeStatus.PENDING or authz.status is not AuthzStatus.PENDING:
        return challenge, authz  # RFC 8555 §7.5.1: responding again changes nothing
    if validator is None:
        raise AcmeError(ProblemType.SERVER_INTERNAL, "challenge validation is not available")
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not store.begin_validation(conn, challenge.id, now):
            return get_challenge(ctx, account, challenge_id)  # a concurrent POST won
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_challenge_processing",
            object_type="acme_challenge",
            object_id=challenge.id,
            details={"type": challenge.type, "identifier": authz.identifier.value},
        )
    _submit(ctx, validator, account, challenge, authz)
    return replace(challenge, status=ChallengeStatus.PROCESSING), authz


def _submit(
    ctx: RAContext,
    validator: Validator,
    account: Account,
    challenge: Challenge,
    authz: Authorization,
) -> None:
    request = ValidationRequest(
        challenge_type=challenge.type,
        identifier=authz.identifier,
        token=challenge.token,
        # RFC 8555 §8.1: token "." base64url(JWK thumbprint of the account key).
        key_authorization=f"{challenge.token}.{account.thumbprint}",
    )

    def done(result: ValidationResult) -> None:
        complete(ctx, validator, account, challenge, authz, result)

    if not validator.va.submit(request, done):
        # Shutting down: leave it processing; recovery on the next start validates it.
        log.warning("validation of %s deferred: server shutting down", challenge.id)


def complete(
    ctx: RAContext,
    validator: Validator,
    account: Account,
    challenge: Challenge,
    authz: Authorization,
    result: ValidationResult,
) -> None:
    """Runs in a VA worker thread. Never raises: a failure here is logged, and recovery
    picks the challenge up again."""
    try:
        result = _with_caa(ctx, validator, account, challenge, authz, result)
        _record(ctx, account, challenge, authz, result)
        validator.observe(challenge.type, "valid" if result.valid else "invalid")
    except Exception:
        log.exception("recording the validation of %s failed", challenge.id)


def _with_caa(
    ctx: RAContext,
    validator: Validator,
    account: Account,
    challenge: Challenge,
    authz: Authorization,
    result: ValidationResult,
) -> ValidationResult:
    if not result.valid:
        return result
    with ctx.db.read() as conn:
        profile = inventory.get_profile(conn, account.profile_id)
    if profile is None or not profile.caa_check:
        return result
    error = asyncio.run(
        validator.va.check_caa(
            authz.identifier,
            ca_identities=validator.caa_identities,
            account_uris=validator.account_urls(account),
            method=challenge.type,
        )
    )
    return result if error is None else replace(result, valid=False, error=error)


def _record(
    ctx: RAContext,
    account: Account,
    challenge: Challenge,
    authz: Authorization,
    result: ValidationResult,
) -> None:
    now = ctx.clock()
    error = json.dumps(problem_document(result.error)) if result.error else None
    with ctx.db.write() as conn:
        if not store.finish_validation(
            conn,
            challenge.id,
            valid=result.valid,
            now=now,
            error=error,
            record=json.dumps(list(result.detail_records)),
        ):
            return  # another worker recorded it first
        new = AuthzStatus.VALID if result.valid else AuthzStatus.INVALID
        store.set_authz_status(
            conn, authz.id, AuthzStatus.PENDING, new, validated_at=now if result.valid else None
        )
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_challenge_completed",
            object_type="acme_challenge",
            object_id=challenge.id,
            details={
                "type": challenge.type,
                "identifier": authz.identifier.value,
                "valid": result.valid,
                "error": result.error.detail if result.error else None,
            },
        )


def check_caa_at_finalize(
    ctx: RAContext,
    validator: Validator | None,
    profile: Profile,
    account: Account,
    authzs: list[Authorization],
) -> None:
    """RFC 8659 §3 via Boulder's practice: CAA checked at validation is checked again
    when that check is older than the recheck window — for every name, one by one."""
    if not profile.caa_check or validator is None:
        return
    cutoff = ctx.clock() - ctx.settings.validation.caa_recheck_after
    problems = []
    for authz in authzs:
        if authz.validated_at is not None and authz.validated_at > cutoff:
            continue
        method = next((c.type for c in authz.challenges if c.status is ChallengeStatus.VALID), "")
        error = asyncio.run(
            validator.va.check_caa(
                authz.identifier,
                ca_identities=validator.caa_identities,
                account_uris=validator.account_urls(account),
                method=method,
            )
        )
        if error is not None:
            problems.append((authz, error))
    if problems:
        raise AcmeError(
            ProblemType.CAA,
            "CAA records forbid issuance for: "
            + ", ".join(a.identifier.value for a, _ in problems),
            subproblems=tuple(
                Subproblem(ProblemType.CAA, e.detail, a.identifier.type, a.identifier.value)
                for a, e in problems
            ),
        )


def recover_stale(ctx: RAContext, validator: Validator) -> int:
    """Re-run validations left processing longer than twice the timeout (their worker is
    gone: crash, SIGKILL, lost replica). Safe with several replicas: each claim is a
    compare-and-set, and a late result of the original worker loses finish_validation."""
    now = ctx.clock()
    older_than = now - 2 * ctx.settings.validation.timeout - timedelta(seconds=5)
    with ctx.db.read() as conn:
        ids = store.stale_validations(conn, older_than)
    resumed = 0
    for challenge_id in ids:
        with ctx.db.write() as conn:
            if not store.claim_stale_validation(conn, challenge_id, older_than, now):
                continue
            challenge = store.get_challenge(conn, challenge_id)
            authz = store.get_authz(conn, challenge.authz_id) if challenge else None
            account = account_store.get(conn, authz.account_id) if authz else None
        if challenge and authz and account:
            _submit(ctx, validator, account, challenge, authz)
            resumed += 1
    return resumed
