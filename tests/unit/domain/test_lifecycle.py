"""The transition table and the derived order status (RFC 8555 §7.1.6)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.lifecycle import (
    ACCOUNT_TRANSITIONS,
    AUTHZ_TRANSITIONS,
    CHALLENGE_TRANSITIONS,
    ORDER_TRANSITIONS,
    authz_effective_status,
    can_transition,
    order_status,
    require_transition,
)
from certctl.domain.model import AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(seconds=1)

# The RFC 8555 §7.1.6 diagrams, written out independently of the module under test.
# A list, not a set: members of different kinds are equal strings and would collapse.
EXPECTED_ALLOWED: list[tuple[StrEnum, StrEnum]] = [
    (AccountStatus.VALID, AccountStatus.DEACTIVATED),
    (AccountStatus.VALID, AccountStatus.REVOKED),
    (OrderStatus.PENDING, OrderStatus.PROCESSING),
    (OrderStatus.PENDING, OrderStatus.INVALID),
    (OrderStatus.PROCESSING, OrderStatus.VALID),
    (OrderStatus.PROCESSING, OrderStatus.INVALID),
    (AuthzStatus.PENDING, AuthzStatus.VALID),
    (AuthzStatus.PENDING, AuthzStatus.INVALID),
    (AuthzStatus.PENDING, AuthzStatus.DEACTIVATED),
    (AuthzStatus.PENDING, AuthzStatus.EXPIRED),
    (AuthzStatus.VALID, AuthzStatus.DEACTIVATED),
    (AuthzStatus.VALID, AuthzStatus.EXPIRED),
    (AuthzStatus.VALID, AuthzStatus.REVOKED),
    (ChallengeStatus.PENDING, ChallengeStatus.PROCESSING),
    (ChallengeStatus.PROCESSING, ChallengeStatus.VALID),
    (ChallengeStatus.PROCESSING, ChallengeStatus.INVALID),
]

STATUS_TYPES: tuple[type[StrEnum], ...] = (
    AccountStatus,
    OrderStatus,
    AuthzStatus,
    ChallengeStatus,
)


def _typed(pairs: Iterable[tuple[StrEnum, StrEnum]]) -> set[tuple[str, str, str]]:
    """StrEnum members of different kinds compare equal ("valid" == "valid"): key by kind."""
    return {(type(a).__name__, a.value, b.value) for a, b in pairs}


def _all_pairs() -> list[tuple[StrEnum, StrEnum]]:
    return [(a, b) for kind in STATUS_TYPES for a in kind for b in kind]


def _id(pair: object) -> str:
    assert isinstance(pair, tuple)
    return f"{type(pair[0]).__name__}:{pair[0]}->{pair[1]}"


@pytest.mark.parametrize("pair", EXPECTED_ALLOWED, ids=_id)
def test_every_allowed_transition_is_allowed(pair: tuple[StrEnum, StrEnum]) -> None:
    current, target = pair
    assert can_transition(current, target)
    require_transition(current, target)  # does not raise


def test_tables_allow_exactly_the_rfc_transitions() -> None:
    tables = (ACCOUNT_TRANSITIONS, ORDER_TRANSITIONS, AUTHZ_TRANSITIONS, CHALLENGE_TRANSITIONS)
    listed: list[tuple[StrEnum, StrEnum]] = [
        (a, b) for table in tables for a, targets in table.items() for b in targets
    ]
    assert len(listed) == len(EXPECTED_ALLOWED) == 16
    assert _typed(listed) == _typed(EXPECTED_ALLOWED)


FORBIDDEN_SAMPLE: list[tuple[object, object]] = [
    (AccountStatus.DEACTIVATED, AccountStatus.VALID),  # deactivation is final (§7.3.6)
    (AccountStatus.REVOKED, AccountStatus.VALID),
    (AccountStatus.VALID, AccountStatus.VALID),
    (OrderStatus.VALID, OrderStatus.PROCESSING),  # no double issuance
    (OrderStatus.INVALID, OrderStatus.PENDING),
    (OrderStatus.PROCESSING, OrderStatus.PENDING),
    (OrderStatus.PENDING, OrderStatus.VALID),  # must pass through processing
    (OrderStatus.READY, OrderStatus.PROCESSING),  # ready is derived, never stored
    (AuthzStatus.INVALID, AuthzStatus.VALID),
    (AuthzStatus.EXPIRED, AuthzStatus.VALID),
    (AuthzStatus.REVOKED, AuthzStatus.VALID),
    (AuthzStatus.DEACTIVATED, AuthzStatus.PENDING),
    (ChallengeStatus.PENDING, ChallengeStatus.VALID),  # validation runs first
    (ChallengeStatus.VALID, ChallengeStatus.PENDING),
    (ChallengeStatus.INVALID, ChallengeStatus.PROCESSING),
    # Across kinds: StrEnum members compare equal to strings, the table must not be fooled.
    (OrderStatus.PENDING, AuthzStatus.VALID),
    (AuthzStatus.PENDING, ChallengeStatus.PROCESSING),
    (AccountStatus.VALID, OrderStatus.INVALID),
    ("valid", AccountStatus.DEACTIVATED),  # a plain string is not a status
    (AccountStatus.VALID, "deactivated"),
]


@pytest.mark.parametrize(("current", "target"), FORBIDDEN_SAMPLE, ids=repr)
def test_forbidden_transitions_are_refused_with_a_typed_error(
    current: object, target: object
) -> None:
    assert not can_transition(current, target)
    with pytest.raises(AcmeError) as info:
        require_transition(current, target)
    assert info.value.type is ProblemType.MALFORMED
    assert info.value.http_status == 409


def test_every_pair_not_listed_is_forbidden() -> None:
    allowed = _typed(EXPECTED_ALLOWED)
    for current, target in _all_pairs():
        expected = (type(current).__name__, current.value, target.value) in allowed
        assert can_transition(current, target) is expected, (current, target)


# --- authz_effective_status ----------------------------------------------------------


@pytest.mark.parametrize("status", [AuthzStatus.PENDING, AuthzStatus.VALID])
def test_live_authz_expires_at_and_after_its_expiry(status: AuthzStatus) -> None:
    assert authz_effective_status(status, LATER, NOW) is status
    assert authz_effective_status(status, NOW, NOW) is AuthzStatus.EXPIRED
    assert authz_effective_status(status, EARLIER, NOW) is AuthzStatus.EXPIRED


@pytest.mark.parametrize(
    "status",
    [AuthzStatus.INVALID, AuthzStatus.DEACTIVATED, AuthzStatus.REVOKED, AuthzStatus.EXPIRED],
)
def test_final_authz_states_survive_expiry(status: AuthzStatus) -> None:
    assert authz_effective_status(status, EARLIER, NOW) is status
    assert authz_effective_status(status, LATER, NOW) is status


# --- order_status --------------------------------------------------------------------


@pytest.mark.parametrize("stored", [OrderStatus.PROCESSING, OrderStatus.VALID, OrderStatus.INVALID])
def test_stored_finalisation_states_win(stored: OrderStatus) -> None:
    # Even past expiry and with authorizations that would say otherwise.
    assert order_status(stored, [AuthzStatus.VALID], LATER, NOW) is stored
    assert order_status(stored, [AuthzStatus.INVALID], EARLIER, NOW) is stored
    assert order_status(stored, [], EARLIER, NOW) is stored


def test_open_order_past_expiry_is_invalid() -> None:
    assert order_status(OrderStatus.PENDING, [AuthzStatus.VALID], NOW, NOW) is OrderStatus.INVALID
    assert order_status(OrderStatus.PENDING, [], EARLIER, NOW) is OrderStatus.INVALID


@pytest.mark.parametrize(
    "bad", [AuthzStatus.INVALID, AuthzStatus.DEACTIVATED, AuthzStatus.EXPIRED, AuthzStatus.REVOKED]
)
def test_any_failed_authz_makes_the_order_invalid(bad: AuthzStatus) -> None:
    statuses = [AuthzStatus.VALID, bad, AuthzStatus.PENDING]
    assert order_status(OrderStatus.PENDING, statuses, LATER, NOW) is OrderStatus.INVALID
    assert order_status(OrderStatus.PENDING, [bad], LATER, NOW) is OrderStatus.INVALID


def test_all_valid_authzs_make_the_order_ready() -> None:
    statuses = [AuthzStatus.VALID, AuthzStatus.VALID]
    assert order_status(OrderStatus.PENDING, statuses, LATER, NOW) is OrderStatus.READY
    # A generator works too (the argument is any iterable).
    gen = (s for s in statuses)
    assert order_status(OrderStatus.PENDING, gen, LATER, NOW) is OrderStatus.READY


def test_some_pending_authz_keeps_the_order_pending() -> None:
    statuses = [AuthzStatus.VALID, AuthzStatus.PENDING]
    assert order_status(OrderStatus.PENDING, statuses, LATER, NOW) is OrderStatus.PENDING
    assert order_status(OrderStatus.PENDING, [AuthzStatus.PENDING], LATER, NOW) is (
        OrderStatus.PENDING
    )


def test_order_without_authorizations_is_pending_not_ready() -> None:
    assert order_status(OrderStatus.PENDING, [], LATER, NOW) is OrderStatus.PENDING


def test_effective_statuses_feed_the_order() -> None:
    """An authz that expired on its own (stored valid) makes an unexpired order invalid."""
    effective = [authz_effective_status(AuthzStatus.VALID, EARLIER, NOW)]
    assert order_status(OrderStatus.PENDING, effective, LATER, NOW) is OrderStatus.INVALID
