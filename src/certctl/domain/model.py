"""Value objects of the ACME server and the inventory (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from certctl.domain.policy import IdentifierPolicy


class AuthMode(StrEnum):
    """How a profile decides that an account may have a name (seeds: acme_auth_mode)."""

    TRUST_AUTHENTICATED = "trust_authenticated"
    CHALLENGE = "challenge"


class AccountStatus(StrEnum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthzStatus(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


# Key algorithms a profile may allow for subscriber keys, as "<family>-<size or curve>".
KEY_ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521", "Ed25519")
DEFAULT_KEY_ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384")
EKU_NAMES = ("serverAuth", "clientAuth")


@dataclass(frozen=True)
class Identifier:
    """RFC 8555 §7.1.4 identifier; ``value`` is already normalised."""

    type: str
    value: str

    @property
    def is_wildcard(self) -> bool:
        return self.type == "dns" and self.value.startswith("*.")

    def to_wire(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    issuer_id: str
    acme_auth_mode: AuthMode
    key_algorithms: tuple[str, ...] = DEFAULT_KEY_ALGORITHMS
    max_validity_days: int = 90
    ekus: tuple[str, ...] = ("serverAuth",)
    must_staple: bool = False
    enabled: bool = True
    description: str = ""
    identifier_policy: IdentifierPolicy = field(default_factory=IdentifierPolicy)
    caa_check: bool = False  # RFC 8659 CAA at validation and, when stale, at finalize
    eab_required: bool = False  # RFC 8555 §7.3.4, on top of the server-wide setting
    allow_preauthorization: bool = False  # RFC 8555 §7.4.1 newAuthz
    renewal_window_days: int | None = None  # ARI policy; None = last third of validity


@dataclass(frozen=True)
class Account:
    id: str
    profile_id: str
    status: AccountStatus
    jwk_json: str
    thumbprint: str
    contact: tuple[str, ...]
    tos_agreed: bool
    created_at: datetime
    eab_kid: str | None = None


@dataclass(frozen=True)
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: ChallengeStatus
    validated_at: datetime | None = None
    error: str | None = None  # problem document JSON


@dataclass(frozen=True)
class Authorization:
    id: str
    order_id: str | None  # None for a pre-authorization (RFC 8555 §7.4.1)
    account_id: str
    identifier: Identifier
    status: AuthzStatus
    expires_at: datetime
    challenges: tuple[Challenge, ...] = field(default_factory=tuple)
    validated_at: datetime | None = None

    @property
    def wildcard(self) -> bool:
        return self.identifier.is_wildcard


@dataclass(frozen=True)
class Order:
    """An order as stored. ``stored_status`` is only the part that cannot be derived
    (processing/valid/invalid, or pending meaning "open"); read ``status`` through
    ``certctl.domain.lifecycle.order_status``."""

    id: str
    account_id: str
    profile_id: str
    identifiers: tuple[Identifier, ...]
    stored_status: OrderStatus
    expires_at: datetime
    created_at: datetime
    not_before: datetime | None = None
    not_after: datetime | None = None
    error: str | None = None
    certificate_id: str | None = None
    authz_ids: tuple[str, ...] = ()
    replaces: str | None = None  # RFC 9773 §5: the certificate version replaced


@dataclass(frozen=True)
class CertificateVersion:
    id: str
    certificate_id: str
    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    pem_chain: str
    csr_pem: str
    key_algorithm: str
    key_size: int
    source: str
    profile_id: str
    issuer_id: str
    acme_account_id: str | None
    acme_order_id: str | None
    created_at: datetime
    status: str = "active"
    revoked_at: datetime | None = None
    revocation_reason: int | None = None
    replaced_by_order_id: str | None = None
    ari_window_end: datetime | None = None
    aki: str = ""  # hex of the authority key identifier (RFC 9773 cert-id lookups)
