"""Orders and authorizations (RFC 8555 §7.4, §7.5): creation, reads, ownership."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found, unauthorized
from certctl.domain.identifiers import parse_identifiers
from certctl.domain.lifecycle import authz_effective_status, order_status
from certctl.domain.model import (
    Account,
    AuthMode,
    Authorization,
    AuthzStatus,
    Challenge,
    ChallengeStatus,
    Identifier,
    Order,
    OrderStatus,
    Profile,
)
from certctl.domain.policy import IdentifierPolicy
from certctl.policy.identifiers import check_identifiers
from certctl.ra import ari
from certctl.ra.context import RAContext, actor_for, new_id, new_token
from certctl.ra.ratelimits import RateLimits
from certctl.ra.replay import (
    PendingSpend,
    pending,
    read_spending,
    settle_spent,
    spend_first,
    write_spending,
)
from certctl.storage import audit_log, new_orders, spending
from certctl.storage import eab as eab_store
from certctl.storage import orders as store

# Clock skew we tolerate on a requested notBefore in the past.
NOT_BEFORE_SKEW = timedelta(minutes=5)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?P<fraction>(?:\.\d{1,9})?)(?:[Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class OrderView:
    order: Order
    status: OrderStatus
    replaces: str | None = None  # RFC 9773 §5: the renewalInfo id, reflected on every read


def _parse_time(payload: dict[str, Any], name: str) -> datetime | None:
    raw = payload.get(name)
    if raw is None:
        return None
    # RFC 3339 §5.6 date-time only: fromisoformat alone also takes ISO 8601 forms that are
    # not RFC 3339 (basic format "20260101T000000Z", a space for "T").
    match = _RFC3339.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise malformed(f"{name} must be an RFC 3339 date-time with a time zone offset")
    # RFC 5280 §4.1.2.5: certificate validity has whole seconds, so a fraction could only
    # be honoured by changing the request, and RFC 8555 §7.4 says refuse instead.
    if match.group("fraction").strip(".0"):
        raise malformed(f"{name} must be whole seconds (certificate validity has no fractions)")
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError:
        raise malformed(f"{name} is not an RFC 3339 date-time") from None


def check_validity_request(
    profile: Profile,
    not_before: datetime | None,
    not_after: datetime | None,
    now: datetime,
    issuer_until: datetime | None = None,
) -> None:
    """RFC 8555 §7.4: honour notBefore/notAfter exactly or refuse; never change them.
    ``issuer_until``: the end of the profile's issuer, which no leaf may outlive."""
    if issuer_until is not None:
        for name, moment in (("notBefore", not_before), ("notAfter", not_after)):
            if moment is not None and moment > issuer_until:
                raise malformed(
                    f"{name} is later than the issuing CA's own end, "
                    f"{issuer_until:%Y-%m-%dT%H:%M:%SZ}"
                )
    start = not_before or now
    max_validity = timedelta(days=profile.max_validity_days)
    if not_before is not None and not_before < now - NOT_BEFORE_SKEW:
        raise malformed("notBefore must not be in the past")
    if not_before is not None and not_before > now + max_validity:
        raise malformed("notBefore is too far in the future")
    if not_after is not None:
        if not_after <= start or not_after <= now:
            raise malformed("notAfter must be later than notBefore and now")
        if not_after - start > max_validity:
            raise malformed(
                "requested validity exceeds the profile maximum of "
                f"{profile.max_validity_days} days"
            )


def new_order(
    ctx: RAContext,
    profile: Profile,
    account: Account,
    payload: dict[str, Any],
    limits: RateLimits | None = None,
    spend: PendingSpend | None = None,
    issuer_until: datetime | None = None,
) -> OrderView:
    """``spend``: the request's nonce, spent in the insert's transaction (ra.replay), or
    before any rate limit is consulted when one applies. ``issuer_until``: the end of the
    profile's issuer (``check_validity_request``)."""
    identifiers = parse_identifiers(
        payload.get("identifiers"), max_count=profile.identifier_policy.max_identifiers
    )
    # Enforced in every auth mode: this is what makes trust_authenticated safe.
    check_identifiers(profile.identifier_policy, identifiers, profile.id)
    _check_eab_names(ctx, account, identifiers, profile.id)
    now = ctx.clock()
    not_before, not_after = _parse_time(payload, "notBefore"), _parse_time(payload, "notAfter")
    check_validity_request(profile, not_before, not_after, now, issuer_until)
    _check_profile_choice(profile, payload)
    replaced = ari.replaced_version(ctx, account, payload, identifiers)
    limits = limits or RateLimits.disabled()
    renewal_due = replaced is not None and ari.renewal_due(ctx, replaced, now)
    order = Order(
        id=new_id("ord-"),
        account_id=account.id,
        profile_id=profile.id,
        identifiers=identifiers,
        stored_status=OrderStatus.PENDING,
        expires_at=now + ctx.settings.order_ttl,
        created_at=now,
        not_before=not_before,
        not_after=not_after,
        replaces=replaced.id if replaced else None,
    )
    authzs = [
        _reused_authz(ctx, profile, order, ident, now)
        or _new_authz(ctx, profile, order, ident, now)
        for ident in identifiers
    ]
    # Open orders first, so a refusal there takes no hourly allowance; then the hourly
    # allowance, outside any transaction (a slow shared store must not hold database
    # locks); then open orders again, exactly, under the account's lock in the insert's
    # transaction. The cap is read before any transaction: never a second connection
    # inside one. A replayed request must not reach a limit (neither trip it nor use it
    # up): the nonce is spent before, in the statement of the first count
    # (storage.spending), or on its own when only the hourly limit applies.
    cap = limits.concurrent_orders_cap(account.id, profile.id)
    if cap > 0:
        _check_open_orders(ctx, limits, account, cap, now, spend)
    elif limits.new_order_counted(account.id, profile.id, renewal_due=renewal_due):
        spend_first(ctx, spend)
    limits.new_order(account.id, profile.id, renewal_due=renewal_due)
    audit = audit_log.event(
        at=now,
        actor=actor_for(account.id),
        action="acme_order_created",
        object_type="acme_order",
        object_id=order.id,
        details={
            "auth_mode": profile.acme_auth_mode.value,
            "profile_id": profile.id,
            "identifiers": [i.value for i in identifiers],
        },
    )
    replaces: str | None = None
    if cap <= 0 and replaced is None and new_orders.one_statement(authzs):
        # Nothing to lock or count first: the spend, if still to be made, and every row
        # are one statement (one round trip on PostgreSQL, storage.new_orders).
        unspent = pending(spend)
        with ctx.db.statement() as conn:
            keywords = unspent.keywords() if unspent is not None else None
            spent = new_orders.create(conn, order, authzs, audit=audit, spend=keywords)
        settle_spent(unspent, spent)
    else:
        with write_spending(ctx, spend) as conn:
            limits.open_orders(conn, account.id, profile.id, now, cap=cap)
            new_orders.create(conn, order, authzs, audit=audit)
            if replaced is not None:
                ari.claim_replacement(conn, replaced, order)
                replaces = ari.replaces_id_on(conn, replaced.id)
    # What was just written, as a read would return it (authorizations in the store's
    # order); nothing else can have touched an order this transaction created.
    stored = sorted(authzs, key=lambda a: (a.identifier.value, a.id))
    return _view(
        ctx,
        replace(order, authz_ids=tuple(a.id for a in stored)),
        [(a.status, a.expires_at) for a in stored],
        replaces,
    )


def _reused_authz(
    ctx: RAContext, profile: Profile, order: Order, ident: Identifier, now: datetime
) -> Authorization | None:
    """A valid authorization of the same account for the same identifier, within its
    lifetime, stands for this order too (RFC 8555 §7.1.4); never across accounts, never an
    invalid one. It is copied, so each order keeps its own authorization URLs."""
    if profile.acme_auth_mode is not AuthMode.CHALLENGE or not ctx.settings.validation.authz_reuse:
        return None
    with ctx.db.read() as conn:
        found = store.reusable_authz(conn, order.account_id, ident, now)
    if found is None or not any(c.status is ChallengeStatus.VALID for c in found.challenges):
        # Born valid while the profile was trust_authenticated: nothing was ever proven,
        # so it cannot stand in for a challenge now that the profile demands one.
        return None
    authz_id = new_id("authz-")
    challenges = tuple(
        replace(c, id=new_id("chall-"), authz_id=authz_id)
        for c in found.challenges
        if c.status is ChallengeStatus.VALID
    )
    return Authorization(
        authz_id,
        order.id,
        order.account_id,
        ident,
        AuthzStatus.VALID,
        min(found.expires_at, order.expires_at),
        challenges,
        found.validated_at,
    )


def _new_authz(
    ctx: RAContext, profile: Profile, order: Order, ident: Identifier, now: datetime
) -> Authorization:
    authz_id = new_id("authz-")
    expires = min(now + ctx.settings.authz_ttl, order.expires_at)
    if profile.acme_auth_mode is AuthMode.TRUST_AUTHENTICATED:
        # The authenticated account is trusted for every name the profile allows; no
        # challenge was validated, so the authorization lists none (nothing is claimed).
        return Authorization(
            authz_id, order.id, order.account_id, ident, AuthzStatus.VALID, expires
        )
    types = _challenge_types(ident)
    challenges = tuple(
        Challenge(new_id("chall-"), authz_id, kind, new_token(), ChallengeStatus.PENDING)
        for kind in types
    )
    return Authorization(
        authz_id, order.id, order.account_id, ident, AuthzStatus.PENDING, expires, challenges
    )


def _check_profile_choice(profile: Profile, payload: dict[str, Any]) -> None:
    """draft-aaron-acme-profiles: an account orders from the profile whose URLs it uses;
    naming it is allowed, naming any other is invalidProfile."""
    chosen = payload.get("profile")
    if chosen is not None and chosen != profile.id:
        raise AcmeError(
            ProblemType.INVALID_PROFILE,
            f"profile {str(chosen)[:64]!r} is not offered here; "
            f"this directory offers {profile.id!r}",
        )


def _check_open_orders(
    ctx: RAContext,
    limits: RateLimits,
    account: Account,
    cap: int,
    now: datetime,
    spend: PendingSpend | None,
) -> None:
    """newOrder's pre-check of the concurrent-orders cap, spending ``spend`` first (in the
    same statement) unless it is spent already."""
    counted = read_spending(
        ctx,
        spend,
        lambda conn: store.open_orders(conn, account.id, now),
        lambda conn, keywords: spending.open_orders(conn, account.id, now, keywords),
    )
    assert counted is not None  # read whenever the nonce was spent
    limits.check_open_orders(cap, counted, now)


def _check_eab_names(
    ctx: RAContext, account: Account, identifiers: tuple[Identifier, ...], profile_id: str
) -> None:
    """An EAB key may carry its own allowed names: accounts bound with it stay inside them."""
    if account.eab_kid is None:
        return
    with ctx.db.read() as conn:
        key = eab_store.get(conn, account.eab_kid)
    if key is None or not key.allowed_names:
        return
    policy = IdentifierPolicy(allowed_names=key.allowed_names, allow_ip=True)
    check_identifiers(policy, identifiers, profile_id)


def _challenge_types(ident: Identifier) -> tuple[str, ...]:
    if ident.type == "ip":
        return ("http-01", "tls-alpn-01")  # RFC 8738 §7: never dns-01 for an address
    if ident.is_wildcard:
        return ("dns-01",)  # RFC 8555 §7.1.3: a wildcard is proven in DNS only
    return ("http-01", "dns-01", "tls-alpn-01")


def get_order(
    ctx: RAContext, account: Account, order_id: str, spend: PendingSpend | None = None
) -> OrderView:
    """``spend``: the request's nonce, spent with the read (storage.spending)."""

    def read(conn: Connection, keywords: dict[str, Any]) -> tuple[bool, OrderView | None]:
        spent, found = spending.get_order(conn, order_id, keywords)
        return spent, _visible(ctx, conn, account, found) if spent else None

    view = read_spending(
        ctx, spend, lambda conn: _visible(ctx, conn, account, store.get_order(conn, order_id)), read
    )
    if view is None:
        raise _no_such_order()
    return view


def order_view(ctx: RAContext, conn: Connection, account: Account, order_id: str) -> OrderView:
    """The order as its account sees it, read on ``conn`` (callers that hold a transaction
    answer from it instead of opening another)."""
    return visible_order(ctx, conn, account, store.get_order(conn, order_id))


def visible_order(
    ctx: RAContext,
    conn: Connection,
    account: Account,
    found: tuple[Order, list[tuple[AuthzStatus, datetime]]] | None,
) -> OrderView:
    """``order_view`` of an order read already (``found``: a ``get_order`` result)."""
    view = _visible(ctx, conn, account, found)
    if view is None:
        raise _no_such_order()
    return view


def _visible(
    ctx: RAContext,
    conn: Connection,
    account: Account,
    found: tuple[Order, list[tuple[AuthzStatus, datetime]]] | None,
) -> OrderView | None:
    """The view of ``found``, or None when the account may not see it."""
    if found is None or found[0].account_id != account.id:
        return None
    order, authz_rows = found
    replaces = ari.replaces_id_on(conn, order.replaces) if order.replaces else None
    return _view(ctx, order, authz_rows, replaces)


def _no_such_order() -> AcmeError:
    # Another account's order is indistinguishable from a missing one.
    return not_found("no such order")


def _view(
    ctx: RAContext,
    order: Order,
    authz_rows: list[tuple[AuthzStatus, datetime]],
    replaces: str | None,
) -> OrderView:
    """The order with its status derived now (RFC 8555 §7.1.6) from its authorizations'
    (status, expiry)."""
    now = ctx.clock()
    effective = [authz_effective_status(s, exp, now) for s, exp in authz_rows]
    return OrderView(
        order, order_status(order.stored_status, effective, order.expires_at, now), replaces
    )


def list_orders(
    ctx: RAContext, account: Account, cursor: str | None
) -> tuple[list[str], str | None]:
    """RFC 8555 §7.1.2.1: a page of order ids and the cursor of the next page, if any."""
    after = _decode_cursor(cursor) if cursor else None
    limit = ctx.settings.orders_page_size
    with ctx.db.read() as conn:
        rows = store.list_order_ids(conn, account.id, after=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = f"{page[-1][1].timestamp():.6f}~{page[-1][0]}" if more and page else None
    return [oid for oid, _ in page], next_cursor


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, sep, oid = cursor.partition("~")
    try:
        if not sep or len(cursor) > 120:
            raise ValueError
        return datetime.fromtimestamp(float(stamp), UTC), oid
    except (ValueError, OverflowError):
        raise malformed("bad orders cursor") from None


def get_authz(
    ctx: RAContext, account: Account, authz_id: str, spend: PendingSpend | None = None
) -> Authorization:
    """``spend``: the request's nonce, spent with the read (storage.spending)."""
    authz = read_spending(
        ctx,
        spend,
        lambda conn: store.get_authz(conn, authz_id),
        lambda conn, keywords: spending.get_authz(conn, authz_id, keywords),
    )
    if authz is None or authz.account_id != account.id:
        raise not_found("no such authorization")
    status = authz_effective_status(authz.status, authz.expires_at, ctx.clock())
    return authz if status is authz.status else _with_status(authz, status)


def _with_status(authz: Authorization, status: AuthzStatus) -> Authorization:
    return replace(authz, status=status)


def get_challenge(
    ctx: RAContext, account: Account, challenge_id: str
) -> tuple[Challenge, Authorization]:
    with ctx.db.read() as conn:
        challenge = store.get_challenge(conn, challenge_id)
    if challenge is None:
        raise not_found("no such challenge")
    return challenge, get_authz(ctx, account, challenge.authz_id)


def update_authz(
    ctx: RAContext, account: Account, authz_id: str, payload: dict[str, Any]
) -> Authorization:
    """RFC 8555 §7.5.2: the client may deactivate a pending or valid authorization."""
    authz = get_authz(ctx, account, authz_id)
    if payload.get("status") != AuthzStatus.DEACTIVATED.value or len(payload) != 1:
        raise malformed('the only change a client may make is {"status": "deactivated"}')
    if authz.status not in (AuthzStatus.PENDING, AuthzStatus.VALID):
        raise AcmeError(ProblemType.MALFORMED, f"authorization is {authz.status.value}", status=409)
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not store.set_authz_status(conn, authz.id, authz.status, AuthzStatus.DEACTIVATED):
            raise AcmeError(ProblemType.MALFORMED, "authorization changed; retry", status=409)
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_authz_deactivated",
            object_type="acme_authorization",
            object_id=authz.id,
        )
    return get_authz(ctx, account, authz_id)


def new_authz(
    ctx: RAContext, profile: Profile, account: Account, payload: dict[str, Any]
) -> Authorization:
    """RFC 8555 §7.4.1 pre-authorization, on profiles that enable it. No wildcards: the
    identifier is exactly the authorization's."""
    if not profile.allow_preauthorization:
        raise unauthorized(f"profile {profile.id} does not offer pre-authorization")
    (ident,) = parse_identifiers([payload.get("identifier")], max_count=1)
    if ident.is_wildcard:
        raise AcmeError(ProblemType.REJECTED_IDENTIFIER, "pre-authorization cannot be a wildcard")
    check_identifiers(profile.identifier_policy, (ident,), profile.id)
    _check_eab_names(ctx, account, (ident,), profile.id)
    now = ctx.clock()
    holder = Order(
        id="",
        account_id=account.id,
        profile_id=profile.id,
        identifiers=(ident,),
        stored_status=OrderStatus.PENDING,
        expires_at=now + ctx.settings.authz_ttl,
        created_at=now,
    )
    authz = replace(_new_authz(ctx, profile, holder, ident, now), order_id=None)
    with ctx.db.write() as conn:
        store.insert_authzs(conn, [authz], now)
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_authz_created",
            object_type="acme_authorization",
            object_id=authz.id,
            details={"identifier": ident.value, "preauthorization": True},
        )
    return get_authz(ctx, account, authz.id)
