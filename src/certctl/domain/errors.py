"""The one internal error hierarchy.

Every failure a client can cause is an ``AcmeError`` of a closed ``ProblemType``; the web
front end turns it into an RFC 7807 problem document in exactly one place
(``certctl.wfe.render``). Detail strings are user-safe: they never carry internal state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ProblemType(StrEnum):
    """RFC 8555 §6.7 error types (the ``urn:ietf:params:acme:error:`` suffix)."""

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REPLACED = "alreadyReplaced"  # RFC 9773 §7.4
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    COMPOUND = "compound"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    INVALID_PROFILE = "invalidProfile"  # draft-aaron-acme-profiles
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"
    # Not RFC 8555 types, but needed at the HTTP edge; rendered with the same shape.
    NOT_FOUND = "notFound"  # rendered as malformed with status 404
    CONFLICT = "conflict"  # rendered as malformed with status 409
    UNSUPPORTED_MEDIA_TYPE = "unsupportedMediaType"  # rendered as malformed with 415
    METHOD_NOT_ALLOWED = "methodNotAllowed"  # rendered as malformed with 405

    @property
    def urn(self) -> str:
        wire = _WIRE_ALIASES.get(self, self.value)
        return f"urn:ietf:params:acme:error:{wire}"


_WIRE_ALIASES: dict[ProblemType, str] = {
    ProblemType.NOT_FOUND: "malformed",
    ProblemType.CONFLICT: "malformed",
    ProblemType.UNSUPPORTED_MEDIA_TYPE: "malformed",
    ProblemType.METHOD_NOT_ALLOWED: "malformed",
}

# Default HTTP status per problem type (RFC 8555 §6.7 and Boulder's practice).
DEFAULT_STATUS: dict[ProblemType, int] = {
    ProblemType.ACCOUNT_DOES_NOT_EXIST: 400,
    ProblemType.ALREADY_REPLACED: 409,
    ProblemType.ALREADY_REVOKED: 400,
    ProblemType.BAD_CSR: 400,
    ProblemType.BAD_NONCE: 400,
    ProblemType.BAD_PUBLIC_KEY: 400,
    ProblemType.BAD_REVOCATION_REASON: 400,
    ProblemType.BAD_SIGNATURE_ALGORITHM: 400,
    ProblemType.CAA: 403,
    ProblemType.COMPOUND: 403,
    ProblemType.CONNECTION: 400,
    ProblemType.DNS: 400,
    ProblemType.EXTERNAL_ACCOUNT_REQUIRED: 403,
    ProblemType.INCORRECT_RESPONSE: 403,
    ProblemType.INVALID_CONTACT: 400,
    ProblemType.INVALID_PROFILE: 400,
    ProblemType.MALFORMED: 400,
    ProblemType.ORDER_NOT_READY: 403,
    ProblemType.RATE_LIMITED: 429,
    ProblemType.REJECTED_IDENTIFIER: 400,
    ProblemType.SERVER_INTERNAL: 500,
    ProblemType.TLS: 400,
    ProblemType.UNAUTHORIZED: 403,  # RFC 8555 §6.7 examples and Boulder use 403
    ProblemType.UNSUPPORTED_CONTACT: 400,
    ProblemType.UNSUPPORTED_IDENTIFIER: 400,
    ProblemType.USER_ACTION_REQUIRED: 403,
    ProblemType.NOT_FOUND: 404,
    ProblemType.CONFLICT: 409,
    ProblemType.UNSUPPORTED_MEDIA_TYPE: 415,
    ProblemType.METHOD_NOT_ALLOWED: 405,
}


@dataclass(frozen=True)
class Subproblem:
    """RFC 8555 §6.7.1: a problem about one identifier of a request."""

    type: ProblemType
    detail: str
    identifier_type: str
    identifier_value: str


@dataclass
class AcmeError(Exception):
    """A typed, user-safe failure. ``detail`` is shown to the client as is."""

    type: ProblemType
    detail: str
    status: int | None = None
    subproblems: tuple[Subproblem, ...] = field(default_factory=tuple)
    retry_after: int | None = None
    # RFC 8555 §7.3.1: onlyReturnExisting misses and some errors carry extra headers/links.
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.type.value}: {self.detail}")

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else DEFAULT_STATUS[self.type]


def malformed(detail: str) -> AcmeError:
    return AcmeError(ProblemType.MALFORMED, detail)


def unauthorized(detail: str) -> AcmeError:
    return AcmeError(ProblemType.UNAUTHORIZED, detail)


def not_found(detail: str = "no such resource") -> AcmeError:
    return AcmeError(ProblemType.NOT_FOUND, detail)
