"""Revocation reason codes (RFC 5280 §5.3.1) and which of them a subscriber may ask for.

RFC 8555 §7.6 lets an ACME client name a reason when it revokes; the server MAY refuse
some with ``badRevocationReason``. Subscribers get the reasons that describe their own
certificate; CA-level reasons (cACompromise, aACompromise), the hold mechanism
(certificateHold, removeFromCRL) and the unassigned code 7 are refused.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography import x509

from certctl.domain.errors import AcmeError, ProblemType


class RevocationReason(IntEnum):
    """CRLReason (RFC 5280 §5.3.1). Code 7 is not assigned."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def flag(self) -> x509.ReasonFlags:
        """The same reason as ``cryptography`` spells it."""
        return _FLAGS[self]


_FLAGS: dict[RevocationReason, x509.ReasonFlags] = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.REMOVE_FROM_CRL: x509.ReasonFlags.remove_from_crl,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}

SUBSCRIBER_REASONS: frozenset[RevocationReason] = frozenset(
    {
        RevocationReason.UNSPECIFIED,
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.AFFILIATION_CHANGED,
        RevocationReason.SUPERSEDED,
        RevocationReason.CESSATION_OF_OPERATION,
        RevocationReason.PRIVILEGE_WITHDRAWN,
    }
)

# Every assigned code: for callers (an operator's API) that may use CA-level reasons too.
ALL_REASONS: frozenset[RevocationReason] = frozenset(RevocationReason)


def parse_reason(
    code: object, *, allowed: frozenset[RevocationReason] = SUBSCRIBER_REASONS
) -> RevocationReason:
    """The reason for ``code`` (a JSON value), if it is an assigned code in ``allowed``.

    Anything else, including 7, out-of-range numbers, booleans and non-integers, is
    ``badRevocationReason`` (RFC 8555 §7.6).
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise AcmeError(ProblemType.BAD_REVOCATION_REASON, "reason must be an integer")
    try:
        reason = RevocationReason(code)
    except ValueError:
        raise AcmeError(
            ProblemType.BAD_REVOCATION_REASON, f"reason {code} is not an RFC 5280 reason code"
        ) from None
    if reason not in allowed:
        raise AcmeError(
            ProblemType.BAD_REVOCATION_REASON, f"reason {code} ({reason.flag.value}) is not allowed"
        )
    return reason
