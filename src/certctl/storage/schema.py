"""Tables (SQLAlchemy Core). Migrations in ``storage/migrations`` create exactly these.

Timestamps are timezone-aware UTC. Identifiers are random strings with at least 128 bits
(RFC 8555 §8.1 asks that for tokens; we do it for every object id).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the value is text: SQLAlchemy's DATETIME writes it with a %-format of a
    # dict and reads it with a regex, after and before the methods above. The two below
    # do the same in one C call each (``isoformat``, ``fromisoformat``), the same text in
    # and out; every issuance binds a dozen timestamps.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_bind

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        fallback = super().result_processor(dialect, coltype)
        return functools.partial(_sqlite_result, fallback)


def _sqlite_bind(value: datetime | None) -> str | None:
    """An aware datetime as SQLAlchemy's SQLite DATETIME stores it, in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_result(fallback: Callable[[Any], Any] | None, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass  # not ISO text: what SQLAlchemy's own reading makes of it
        else:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    read: datetime | None = fallback(value) if fallback is not None else value
    return read


def _ts(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    _ts("created_at"),
)

issuers = Table(
    "issuers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("cert_pem", Text, nullable=False),
    Column("chain_pem", Text, nullable=False),
    Column("key_type", String(32), nullable=False),
    _ts("created_at"),
)

profiles = Table(
    "certificate_profiles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("issuer_id", String(64), ForeignKey("issuers.id"), nullable=False),
    Column("acme_auth_mode", String(32), nullable=False),
    Column("key_algorithms", Text, nullable=False),  # JSON array
    Column("max_validity_days", Integer, nullable=False),
    Column("ekus", Text, nullable=False),  # JSON array
    Column("must_staple", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    # Identifier policy (JSON arrays of name patterns / CIDRs), enforced in every mode.
    Column("allowed_names", Text, nullable=False, server_default="[]"),
    Column("denied_names", Text, nullable=False, server_default="[]"),
    Column("allow_wildcards", Boolean, nullable=False, server_default=true()),
    Column("allow_ip", Boolean, nullable=False, server_default=false()),
    Column("ip_networks", Text, nullable=False, server_default="[]"),
    Column("max_identifiers", Integer, nullable=False, server_default="100"),
    Column("caa_check", Boolean, nullable=False, server_default=false()),
    Column("eab_required", Boolean, nullable=False, server_default=false()),
    Column("allow_preauthorization", Boolean, nullable=False, server_default=false()),
    # Renewal policy for ARI (RFC 9773): renew in [notAfter - days, notAfter - days/2].
    Column("renewal_window_days", Integer, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
)

acme_accounts = Table(
    "acme_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("profile_id", String(64), ForeignKey("certificate_profiles.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("jwk_json", Text, nullable=False),
    Column("jwk_thumbprint", String(64), nullable=False),
    Column("key_spki_sha256", String(64), nullable=False),
    Column("contact", Text, nullable=False),  # JSON array
    Column("tos_agreed", Boolean, nullable=False),
    Column("eab_kid", String(128), ForeignKey("eab_keys.kid"), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    # One account per key per profile (RFC 8555 §7.3.1 returns the existing one).
    UniqueConstraint("profile_id", "jwk_thumbprint", name="uq_acme_accounts_profile_key"),
    Index("ix_acme_accounts_spki", "key_spki_sha256"),
)

acme_orders = Table(
    "acme_orders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), ForeignKey("acme_accounts.id"), nullable=False),
    Column("profile_id", String(64), ForeignKey("certificate_profiles.id"), nullable=False),
    Column("status", String(16), nullable=False),  # stored part only, see domain.lifecycle
    Column("identifiers", Text, nullable=False),  # JSON array of {type, value}
    _ts("not_before", nullable=True),
    _ts("not_after", nullable=True),
    _ts("expires_at"),
    Column("error", Text, nullable=True),
    Column("reserved_serial", String(64), nullable=True),  # recorded before signing
    Column("certificate_id", String(64), nullable=True),
    # RFC 9773 §5: the certificate version this order replaces.
    Column("replaces", String(64), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    Index("ix_acme_orders_account_created", "account_id", "created_at", "id"),
    # The concurrent-orders limit counts an account's open (pending, processing) orders.
    Index("ix_acme_orders_account_status", "account_id", "status"),
)

acme_authorizations = Table(
    "acme_authorizations",
    metadata,
    Column("id", String(64), primary_key=True),
    # NULL for a pre-authorization (RFC 8555 §7.4.1), which belongs to no order.
    Column("order_id", String(64), ForeignKey("acme_orders.id"), nullable=True),
    Column("account_id", String(64), ForeignKey("acme_accounts.id"), nullable=False),
    Column("identifier_type", String(8), nullable=False),
    Column("identifier_value", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    _ts("expires_at"),
    _ts("created_at"),
    _ts("validated_at", nullable=True),
    Index("ix_acme_authorizations_order", "order_id"),
    # Authorization reuse looks up an account's valid authorizations by identifier.
    Index(
        "ix_acme_authorizations_reuse",
        "account_id",
        "identifier_type",
        "identifier_value",
        "status",
    ),
)

acme_challenges = Table(
    "acme_challenges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("authz_id", String(64), ForeignKey("acme_authorizations.id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("token", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    _ts("validated_at", nullable=True),
    Column("error", Text, nullable=True),
    # When validation started: start-up recovery re-runs validations left processing by a
    # crash, and only those older than a validation timeout (another replica's are live).
    _ts("processing_since", nullable=True),
    Column("validation_record", Text, nullable=True),  # JSON: what the VA saw
    Index("ix_acme_challenges_authz", "authz_id"),
    Index("ix_acme_challenges_status", "status"),
)

eab_keys = Table(
    "eab_keys",
    metadata,
    # RFC 8555 §7.3.4: the kid and MAC key handed to the subscriber out of band.
    Column("kid", String(128), primary_key=True),
    Column("hmac_key", LargeBinary, nullable=False),
    Column("profile_ids", Text, nullable=False),  # JSON array
    Column("reusable", Boolean, nullable=False),
    Column("uses", Integer, nullable=False, server_default="0"),
    Column("revoked", Boolean, nullable=False, server_default=false()),
    Column("allowed_names", Text, nullable=False, server_default="[]"),
    Column("description", Text, nullable=False, server_default=""),
    _ts("expires_at", nullable=True),
    _ts("created_at"),
    _ts("last_used_at", nullable=True),
)

used_nonces = Table(
    "acme_used_nonces",
    metadata,
    # RFC 8555 §6.5: a nonce is accepted once. The primary key makes the second use lose.
    # A nonce carries its own expiry under its MAC (certctl.acme.nonce), so (expires_at,
    # nonce) is as unique as the nonce, and the one key also serves the GC's purge by
    # expiry: each spend writes one b-tree, at its end (expiries grow), where a key on
    # the nonce and an index on the expiry wrote three on SQLite (the table, the key at a
    # random page, the index). Without a rowid on SQLite: the key is the table.
    Column("expires_at", UTCDateTime(), primary_key=True),
    Column("nonce", String(96), primary_key=True),
    sqlite_with_rowid=False,
)

managed_certificates = Table(
    "managed_certificates",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("common_name", String(255), nullable=False),
    Column("sans", Text, nullable=False),  # JSON array
    Column("profile_id", String(64), ForeignKey("certificate_profiles.id"), nullable=False),
    Column("issuer_id", String(64), ForeignKey("issuers.id"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    _ts("expires_at"),
    _ts("created_at"),
    _ts("updated_at"),
)

certificate_versions = Table(
    "certificate_versions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("certificate_id", String(64), ForeignKey("managed_certificates.id"), nullable=False),
    Column("serial", String(64), nullable=False, unique=True),
    Column("fingerprint_sha256", String(64), nullable=False, unique=True),
    _ts("not_before"),
    _ts("not_after"),
    Column("pem_chain", Text, nullable=False),
    Column("csr_pem", Text, nullable=False),
    Column("key_algorithm", String(16), nullable=False),
    Column("key_size", Integer, nullable=False),
    Column("source", String(16), nullable=False),
    Column("profile_id", String(64), ForeignKey("certificate_profiles.id"), nullable=False),
    Column("issuer_id", String(64), ForeignKey("issuers.id"), nullable=False),
    Column("acme_account_id", String(64), ForeignKey("acme_accounts.id"), nullable=True),
    Column("acme_order_id", String(64), ForeignKey("acme_orders.id"), nullable=True),
    Column("status", String(16), nullable=False),
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
    Column("revocation_reason", Integer, nullable=True),
    # RFC 9773 §5: set once, compare-and-set, by the order that replaces this certificate.
    Column("replaced_by_order_id", String(64), nullable=True),
    # `certctl ari shift`: the suggested renewal window ends no later than this.
    _ts("ari_window_end", nullable=True),
    Column("aki", String(128), nullable=False, server_default=""),
    Index("ix_certificate_versions_certificate", "certificate_id"),
    Index("ix_certificate_versions_issuer_status", "issuer_id", "status"),
)

certificate_revocations = Table(
    "certificate_revocations",
    metadata,
    # The feed of revocations in commit order: OCSP caches in every process follow it.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("serial", String(64), ForeignKey("certificate_versions.serial"), nullable=False),
    Column("issuer_id", String(64), ForeignKey("issuers.id"), nullable=False),
    _ts("revoked_at"),
    Column("reason", Integer, nullable=False),
    Column("actor", String(200), nullable=False),
    UniqueConstraint("serial", name="uq_certificate_revocations_serial"),
)

blocked_keys = Table(
    "blocked_keys",
    metadata,
    # SPKI SHA-256 of keys revoked for keyCompromise: refused as CSR and account keys.
    Column("spki_sha256", String(64), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("source_serial", String(64), nullable=True),
    _ts("created_at"),
)

crl_state = Table(
    "crl_state",
    metadata,
    Column("issuer_id", String(64), ForeignKey("issuers.id"), primary_key=True),
    # RFC 5280 §5.2.3: strictly increasing, and it survives restarts because it lives here.
    Column("crl_number", Integer, nullable=False),
    _ts("this_update"),
    _ts("next_update"),
    Column("der", LargeBinary, nullable=False),
)

ratelimit_overrides = Table(
    "ratelimit_overrides",
    metadata,
    # A limit's value for one account or one profile (`certctl ratelimit set`); an
    # account's beats its profile's, which beats the server-wide setting. 0 turns it off.
    # One value per (scope, subject, limit): the primary key.
    Column("scope", String(16), primary_key=True),  # account | profile
    Column("subject_id", String(64), primary_key=True),
    Column("limit_name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(64), primary_key=True),
    _ts("at"),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("details", Text, nullable=False),  # JSON object
    Index("ix_audit_events_object", "object_type", "object_id"),
    Index("ix_audit_events_at", "at"),
)
