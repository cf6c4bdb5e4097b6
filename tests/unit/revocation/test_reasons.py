from __future__ import annotations

import pytest
from cryptography import x509

from certctl.domain.errors import AcmeError, ProblemType
from certctl.revocation import ALL_REASONS, SUBSCRIBER_REASONS, RevocationReason, parse_reason


def test_codes_are_rfc_5280_crl_reasons_without_7() -> None:
    assert [int(r) for r in RevocationReason] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_flag_round_trips_through_a_crl_reason_extension(reason: RevocationReason) -> None:
    extension = x509.CRLReason(reason.flag)
    assert extension.reason is reason.flag
    assert x509.ReasonFlags(reason.flag.value) is reason.flag


@pytest.mark.parametrize("code", [0, 1, 3, 4, 5, 9])
def test_subscriber_may_use(code: int) -> None:
    assert parse_reason(code) == code
    assert RevocationReason(code) in SUBSCRIBER_REASONS


@pytest.mark.parametrize("code", [2, 6, 8, 10])
def test_subscriber_may_not_use_ca_level_or_hold_reasons(code: int) -> None:
    with pytest.raises(AcmeError) as caught:
        parse_reason(code)
    assert caught.value.type is ProblemType.BAD_REVOCATION_REASON
    assert parse_reason(code, allowed=ALL_REASONS) == code  # an operator may


@pytest.mark.parametrize("code", [7, -1, 11, 2**64, True, False, "1", 1.0, None, [1]])
def test_unassigned_and_non_integer_codes_are_bad(code: object) -> None:
    with pytest.raises(AcmeError) as caught:
        parse_reason(code, allowed=ALL_REASONS)
    assert caught.value.type is ProblemType.BAD_REVOCATION_REASON
    assert caught.value.http_status == 400
