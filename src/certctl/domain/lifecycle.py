"""The one transition table for accounts, orders, authorizations and challenges.

RFC 8555 §7.1.6 draws the state diagrams. Storage applies each transition as a
compare-and-set against the prior state this table allows; order status is *derived*
from the stored finalisation state, the authorizations and the expiry, never stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus

ACCOUNT_TRANSITIONS: dict[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.VALID: frozenset({AccountStatus.DEACTIVATED, AccountStatus.REVOKED}),
    AccountStatus.DEACTIVATED: frozenset(),
    AccountStatus.REVOKED: frozenset(),
}

# Stored order states: PENDING here means "open, derive from authorizations".
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PROCESSING, OrderStatus.INVALID}),
    OrderStatus.PROCESSING: frozenset({OrderStatus.VALID, OrderStatus.INVALID}),
    OrderStatus.VALID: frozenset(),
    OrderStatus.INVALID: frozenset(),
}

AUTHZ_TRANSITIONS: dict[AuthzStatus, frozenset[AuthzStatus]] = {
    AuthzStatus.PENDING: frozenset(
        {AuthzStatus.VALID, AuthzStatus.INVALID, AuthzStatus.DEACTIVATED, AuthzStatus.EXPIRED}
    ),
    AuthzStatus.VALID: frozenset(
        {AuthzStatus.DEACTIVATED, AuthzStatus.EXPIRED, AuthzStatus.REVOKED}
    ),
    AuthzStatus.INVALID: frozenset(),
    AuthzStatus.DEACTIVATED: frozenset(),
    AuthzStatus.EXPIRED: frozenset(),
    AuthzStatus.REVOKED: frozenset(),
}

CHALLENGE_TRANSITIONS: dict[ChallengeStatus, frozenset[ChallengeStatus]] = {
    ChallengeStatus.PENDING: frozenset({ChallengeStatus.PROCESSING}),
    ChallengeStatus.PROCESSING: frozenset({ChallengeStatus.VALID, ChallengeStatus.INVALID}),
    ChallengeStatus.VALID: frozenset(),
    ChallengeStatus.INVALID: frozenset(),
}

_TABLES: dict[type, dict[object, frozenset[object]]] = {
    AccountStatus: ACCOUNT_TRANSITIONS,  # type: ignore[dict-item]
    OrderStatus: ORDER_TRANSITIONS,  # type: ignore[dict-item]
    AuthzStatus: AUTHZ_TRANSITIONS,  # type: ignore[dict-item]
    ChallengeStatus: CHALLENGE_TRANSITIONS,  # type: ignore[dict-item]
}


def can_transition(current: object, target: object) -> bool:
    """False for anything the table does not list, including derived states (an order is
    never stored as ready) and values that are not statuses at all."""
    table = _TABLES.get(type(current))
    if table is None or type(target) is not type(current):
        return False
    return target in table.get(current, frozenset())


def require_transition(current: object, target: object) -> None:
    """Raise a typed error for a transition the table does not allow."""
    if not can_transition(current, target):
        raise AcmeError(
            ProblemType.MALFORMED, f"cannot move from {current} to {target}", status=409
        )


def authz_effective_status(status: AuthzStatus, expires_at: datetime, now: datetime) -> AuthzStatus:
    """RFC 8555 §7.1.6: a pending or valid authorization past its expiry is expired."""
    if status in (AuthzStatus.PENDING, AuthzStatus.VALID) and now >= expires_at:
        return AuthzStatus.EXPIRED
    return status


def order_status(
    stored: OrderStatus,
    authz_statuses: Iterable[AuthzStatus],
    expires_at: datetime,
    now: datetime,
) -> OrderStatus:
    """Derive an order's status (RFC 8555 §7.1.6, Pebble's rule).

    ``authz_statuses`` must already be effective statuses (see authz_effective_status).
    The finalize's claim repeats the READY case in SQL, as its compare-and-set
    (storage.orders.BEGIN_PROCESSING): a change here must be made there too.
    """
    if stored in (OrderStatus.VALID, OrderStatus.INVALID, OrderStatus.PROCESSING):
        return stored
    if now >= expires_at:
        return OrderStatus.INVALID
    statuses = list(authz_statuses)
    if any(s is not AuthzStatus.VALID and s is not AuthzStatus.PENDING for s in statuses):
        return OrderStatus.INVALID
    if statuses and all(s is AuthzStatus.VALID for s in statuses):
        return OrderStatus.READY
    return OrderStatus.PENDING
