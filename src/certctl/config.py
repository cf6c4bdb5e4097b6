"""One typed settings object, read once from the environment and validated at start-up.

``CERTCTL_*`` configures the server; ``CERTCTL_ACME_SERVER_*`` configures its ACME surface
(names as in the original design notes). Every field has a safe default. ``ENV_VARS`` lists
every variable read here; a test checks the docs against it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from certctl.domain.model import AuthMode

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PROFILE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # fullmatch: "$" passes a final \n
_INT = re.compile(r"^-?[0-9]+$", re.ASCII)
_REDIS_URL = re.compile(r"^(?:rediss?://[^\s/]|unix:///?[^\s])\S*$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# CERTCTL_ACME_SERVER_RECONCILE_AFTER may not go below this. Between reserving the serial
# (the order turns processing, RFC 8555 §7.1.6) and recording the certificate, finalize
# signs (milliseconds) and runs one write transaction whose waits the store bounds: up to
# 30 s for a pool connection (SQLAlchemy's default pool timeout) plus, on SQLite, up to
# 15 s for the write lock (busy_timeout); then it has recorded the certificate or given
# up. One minute covers those 45 s with room for signing under load and for clock skew
# between replicas (updated_at is the finalizing replica's clock). Below it, reconcile
# could mark a live finalize's order invalid; that finalize's record (a compare-and-set on
# processing) would then fail, leaving a signed certificate that is never delivered.
RECONCILE_AFTER_MIN = timedelta(minutes=1)


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def parse_duration(name: str, text: str) -> timedelta:
    """Go-style durations as in the design notes: ``90s``, ``5m``, ``24h``, ``1h30m``."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"{name}: {text!r} is not a duration like 30s, 5m or 24h")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    value = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        # A zero TTL would mint nonces, orders and authorizations that are born expired.
        raise ConfigError(f"{name}: {text!r} must be longer than zero")
    return value


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {text!r} is not a boolean")


def _int(name: str, text: str, minimum: int, maximum: int) -> int:
    # Plain decimal digits only: int() would also take "1_000", "+5" and non-ASCII digits.
    if _INT.match(text.strip()) is None:
        raise ConfigError(f"{name}: {text!r} is not an integer")
    value = int(text.strip())
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}: {value} is outside {minimum}..{maximum}")
    return value


def _listen(name: str, text: str) -> tuple[str, int]:
    """``HOST:PORT``; an IPv6 host is written in brackets (``[::1]:8443``, RFC 3986 §3.2.2)."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ConfigError(f"{name}: {text!r}: brackets are only for IPv6 addresses")
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"{name}: {text!r}: write an IPv6 host in brackets, e.g. [::1]:8443")
    if not sep or not host or any(c.isspace() for c in host):
        raise ConfigError(f"{name}: {text!r} must be HOST:PORT")
    return host, _int(name, port, 1, 65535)


def _http_url(name: str, text: str) -> str:
    value = text.strip()
    if value and not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{name}: {text!r} is not an http(s) URL")
    return value


def _base_url(name: str, text: str) -> str:
    """An http(s) URL that paths are appended to: no query, fragment or blank inside."""
    value = _http_url(name, text).rstrip("/")
    if any(c in value for c in "?#") or any(c.isspace() for c in value):
        raise ConfigError(f"{name}: {text!r} must be a plain http(s) base URL")
    return value


def _database_url(name: str, text: str) -> str:
    value = text.strip()
    if not value:
        return value
    try:
        backend = make_url(value).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"{name}: not a database URL (postgresql+psycopg://...)") from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{name}: {backend!r} is not supported (sqlite or postgresql)")
    return value


def _redis_url(name: str, text: str) -> str:
    """``redis://``, ``rediss://`` (TLS) or ``unix://``; never echoed (it may hold a password)."""
    value = text.strip()
    if value and not _REDIS_URL.match(value):
        raise ConfigError(f"{name}: not a Redis URL (redis://host:6379/0, rediss://, unix://)")
    return value


@dataclass(frozen=True)
class ValidationSettings:
    """Challenge validation (RFC 8555 §8, RFC 8737, RFC 8738), CAA and authz reuse."""

    http01_concurrency: int = 10
    dns01_concurrency: int = 10
    tlsalpn01_concurrency: int = 10
    dns01_resolvers: tuple[tuple[str, int], ...] = ()  # () = the system resolver
    timeout: timedelta = timedelta(seconds=30)
    http_port: int = 80
    tls_port: int = 443
    allow_loopback: bool = False  # labs and tests only
    networks: tuple[str, ...] = ()  # () = any address that is not always forbidden
    authz_reuse: bool = True
    caa_recheck_after: timedelta = timedelta(hours=8)
    retry_after: timedelta = timedelta(seconds=1)


@dataclass(frozen=True)
class RateLimitSettings:
    """ACME rate limits (design notes, Phase 5); each 0 turns that limit off. Overrides per
    account and per profile (``certctl ratelimit``) take precedence over these."""

    orders_per_hour: int = 100  # per account
    concurrent_orders: int = 5  # open orders per account, counted in the database
    key_change_per_hour: int = 5  # per account
    challenge_responds_per_hour: int = 60  # per challenge
    new_accounts_per_ip_per_hour: int = 50  # per client address (IPv6 by /64)


@dataclass(frozen=True)
class AcmeServerSettings:
    enabled: bool = True
    default_auth_mode: AuthMode = AuthMode.TRUST_AUTHENTICATED
    default_profile_id: str = "default"
    nonce_ttl: timedelta = timedelta(minutes=5)
    order_ttl: timedelta = timedelta(hours=24)
    authz_ttl: timedelta = timedelta(hours=24)
    tos_url: str = ""
    website: str = ""
    caa_identities: tuple[str, ...] = ()
    eab_required: bool = False
    orders_page_size: int = 100
    max_body_bytes: int = 64 * 1024
    # Threads per worker that run ACME requests needing the store; 0 picks by database
    # (certctl.wfe.routes.handler_threads). At most the database pool's 10 + 10.
    handler_threads: int = 0
    external_url: str = ""  # how clients reach us; default https://LISTEN
    ari_enabled: bool = True
    ari_poll_interval: timedelta = timedelta(hours=6)
    crl_generation_interval: timedelta = timedelta(hours=1)
    # Relying-party routes (/.well-known/pki): the base URL put in leaves (CRL distribution
    # point, OCSP) when it differs from external_url, and the per-client-IP token bucket.
    pki_base_url: str = ""
    pki_rate_limit_per_second: int = 50  # 0 turns the limit off
    pki_rate_limit_burst: int = 100
    gc_interval: timedelta = timedelta(minutes=1)  # zero turns the GC loop off
    # How long an order must have been processing before reconcile (at start-up and in
    # the GC loop) takes its finalize for dead; at least RECONCILE_AFTER_MIN.
    reconcile_after: timedelta = timedelta(minutes=2)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    database_url: str = ""
    # Shared rate-limit store for a fleet; empty: limits are kept in each process's memory.
    redis_url: str = ""
    plain_http: bool = False
    workers: int = 1
    ca_key_type: str = "ecdsa-p256"
    tls_hostnames: tuple[str, ...] = ()
    log_level: str = "INFO"
    # SQLite only: FULL makes every commit durable before its answer; NORMAL does not.
    sqlite_synchronous: str = "FULL"
    acme: AcmeServerSettings = field(default_factory=AcmeServerSettings)

    @property
    def effective_database_url(self) -> str:
        """``CERTCTL_DATABASE_URL`` or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{(self.data_dir / 'certctl.db').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


ENV_VARS: tuple[str, ...] = (
    "CERTCTL_DATA_DIR",
    "CERTCTL_LISTEN",
    "CERTCTL_DATABASE_URL",
    "CERTCTL_PLAIN_HTTP",
    "CERTCTL_WORKERS",
    "CERTCTL_CA_KEY_TYPE",
    "CERTCTL_TLS_HOSTNAMES",
    "CERTCTL_LOG_LEVEL",
    "CERTCTL_SQLITE_SYNCHRONOUS",
    "CERTCTL_ACME_SERVER_ENABLED",
    "CERTCTL_ACME_SERVER_DEFAULT_AUTH_MODE",
    "CERTCTL_ACME_SERVER_DEFAULT_PROFILE_ID",
    "CERTCTL_ACME_SERVER_NONCE_TTL",
    "CERTCTL_ACME_SERVER_ORDER_TTL",
    "CERTCTL_ACME_SERVER_AUTHZ_TTL",
    "CERTCTL_ACME_SERVER_TOS_URL",
    "CERTCTL_ACME_SERVER_WEBSITE",
    "CERTCTL_ACME_SERVER_CAA_IDENTITIES",
    "CERTCTL_ACME_SERVER_EAB_REQUIRED",
    "CERTCTL_ACME_SERVER_ORDERS_PAGE_SIZE",
    "CERTCTL_ACME_SERVER_MAX_BODY_BYTES",
    "CERTCTL_ACME_SERVER_HANDLER_THREADS",
    "CERTCTL_ACME_SERVER_HTTP01_CONCURRENCY",
    "CERTCTL_ACME_SERVER_DNS01_CONCURRENCY",
    "CERTCTL_ACME_SERVER_TLSALPN01_CONCURRENCY",
    "CERTCTL_ACME_SERVER_DNS01_RESOLVER",
    "CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT",
    "CERTCTL_ACME_SERVER_VALIDATION_HTTP_PORT",
    "CERTCTL_ACME_SERVER_VALIDATION_TLS_PORT",
    "CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK",
    "CERTCTL_ACME_SERVER_VALIDATION_NETWORKS",
    "CERTCTL_ACME_SERVER_AUTHZ_REUSE",
    "CERTCTL_ACME_SERVER_CAA_RECHECK_AFTER",
    "CERTCTL_ACME_SERVER_RETRY_AFTER",
    "CERTCTL_ACME_SERVER_EXTERNAL_URL",
    "CERTCTL_ACME_SERVER_ARI_ENABLED",
    "CERTCTL_ACME_SERVER_ARI_POLL_INTERVAL",
    "CERTCTL_CRL_GENERATION_INTERVAL",
    "CERTCTL_PKI_BASE_URL",
    "CERTCTL_PKI_RATE_LIMIT_PER_SECOND",
    "CERTCTL_PKI_RATE_LIMIT_BURST",
    "CERTCTL_ACME_SERVER_GC_INTERVAL",
    "CERTCTL_ACME_SERVER_RECONCILE_AFTER",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_ORDERS_PER_HOUR",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_CONCURRENT_ORDERS",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_KEY_CHANGE_PER_HOUR",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_CHALLENGE_RESPONDS_PER_HOUR",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_NEW_ACCOUNTS_PER_IP_PER_HOUR",
    "CERTCTL_REDIS_URL",
)

# SQLite's PRAGMA synchronous values an operator may choose (storage.db applies them).
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
CA_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build and validate Settings from an environment mapping (``os.environ``)."""

    def get(name: str, default: str = "") -> str:
        # Set but empty (``VAR=`` in a unit file or compose file) means "use the default".
        value = env.get(name, "")
        return value if value.strip() else default

    host, port = _listen("CERTCTL_LISTEN", get("CERTCTL_LISTEN", "127.0.0.1:8443"))
    key_type = get("CERTCTL_CA_KEY_TYPE", "ecdsa-p256").strip().lower()
    if key_type not in CA_KEY_TYPES:
        raise ConfigError(
            f"CERTCTL_CA_KEY_TYPE: {key_type!r} is not one of {', '.join(CA_KEY_TYPES)}"
        )
    log_level = get("CERTCTL_LOG_LEVEL", "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"CERTCTL_LOG_LEVEL: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    synchronous = get("CERTCTL_SQLITE_SYNCHRONOUS", "FULL").strip().upper()
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ConfigError(
            f"CERTCTL_SQLITE_SYNCHRONOUS: {synchronous!r} is not one of "
            f"{', '.join(SQLITE_SYNCHRONOUS)}"
        )
    return Settings(
        data_dir=Path(get("CERTCTL_DATA_DIR", "data")),
        listen_host=host,
        listen_port=port,
        database_url=_database_url("CERTCTL_DATABASE_URL", get("CERTCTL_DATABASE_URL")),
        redis_url=_redis_url("CERTCTL_REDIS_URL", get("CERTCTL_REDIS_URL")),
        plain_http=_bool("CERTCTL_PLAIN_HTTP", get("CERTCTL_PLAIN_HTTP", "false")),
        workers=_int("CERTCTL_WORKERS", get("CERTCTL_WORKERS", "1"), 1, 64),
        ca_key_type=key_type,
        tls_hostnames=_csv(get("CERTCTL_TLS_HOSTNAMES")),
        log_level=log_level,
        sqlite_synchronous=synchronous,
        acme=_acme_settings(get, env),
    )


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _acme_settings(get: _Getter, env: Mapping[str, str]) -> AcmeServerSettings:
    prefix = "CERTCTL_ACME_SERVER_"
    mode_text = get(prefix + "DEFAULT_AUTH_MODE", AuthMode.TRUST_AUTHENTICATED.value)
    try:
        mode = AuthMode(mode_text.strip())
    except ValueError:
        raise ConfigError(
            f"{prefix}DEFAULT_AUTH_MODE: {mode_text!r} is not trust_authenticated or challenge"
        ) from None
    # Unlike the others, set-but-empty is meaningful here: no /acme shorthand at all.
    profile_id = env.get(prefix + "DEFAULT_PROFILE_ID", "default").strip()
    if profile_id and not _PROFILE_ID.fullmatch(profile_id):
        raise ConfigError(f"{prefix}DEFAULT_PROFILE_ID: {profile_id!r} is not a profile id")
    return AcmeServerSettings(
        enabled=_bool(prefix + "ENABLED", get(prefix + "ENABLED", "true")),
        default_auth_mode=mode,
        default_profile_id=profile_id,
        nonce_ttl=parse_duration(prefix + "NONCE_TTL", get(prefix + "NONCE_TTL", "5m")),
        order_ttl=parse_duration(prefix + "ORDER_TTL", get(prefix + "ORDER_TTL", "24h")),
        authz_ttl=parse_duration(prefix + "AUTHZ_TTL", get(prefix + "AUTHZ_TTL", "24h")),
        tos_url=_http_url(prefix + "TOS_URL", get(prefix + "TOS_URL")),
        website=_http_url(prefix + "WEBSITE", get(prefix + "WEBSITE")),
        caa_identities=_csv(get(prefix + "CAA_IDENTITIES")),
        eab_required=_bool(prefix + "EAB_REQUIRED", get(prefix + "EAB_REQUIRED", "false")),
        orders_page_size=_int(
            prefix + "ORDERS_PAGE_SIZE", get(prefix + "ORDERS_PAGE_SIZE", "100"), 1, 1000
        ),
        max_body_bytes=_int(
            prefix + "MAX_BODY_BYTES", get(prefix + "MAX_BODY_BYTES", "65536"), 1024, 1 << 20
        ),
        handler_threads=_int(
            prefix + "HANDLER_THREADS", get(prefix + "HANDLER_THREADS", "0"), 0, 20
        ),
        external_url=_http_url(prefix + "EXTERNAL_URL", get(prefix + "EXTERNAL_URL")),
        ari_enabled=_bool(prefix + "ARI_ENABLED", get(prefix + "ARI_ENABLED", "true")),
        ari_poll_interval=parse_duration(
            prefix + "ARI_POLL_INTERVAL", get(prefix + "ARI_POLL_INTERVAL", "6h")
        ),
        gc_interval=_duration_or_off(prefix + "GC_INTERVAL", get(prefix + "GC_INTERVAL", "1m")),
        reconcile_after=_reconcile_after(
            prefix + "RECONCILE_AFTER", get(prefix + "RECONCILE_AFTER", "2m")
        ),
        crl_generation_interval=parse_duration(
            "CERTCTL_CRL_GENERATION_INTERVAL", get("CERTCTL_CRL_GENERATION_INTERVAL", "1h")
        ),
        pki_base_url=_base_url("CERTCTL_PKI_BASE_URL", get("CERTCTL_PKI_BASE_URL")),
        pki_rate_limit_per_second=_int(
            "CERTCTL_PKI_RATE_LIMIT_PER_SECOND",
            get("CERTCTL_PKI_RATE_LIMIT_PER_SECOND", "50"),
            0,
            1_000_000,
        ),
        pki_rate_limit_burst=_int(
            "CERTCTL_PKI_RATE_LIMIT_BURST", get("CERTCTL_PKI_RATE_LIMIT_BURST", "100"), 1, 1_000_000
        ),
        validation=_validation_settings(get, prefix),
        rate_limits=_rate_limit_settings(get, prefix + "RATE_LIMIT_"),
    )


def _rate_limit_settings(get: _Getter, prefix: str) -> RateLimitSettings:
    def limit(name: str, default: int) -> int:
        return _int(prefix + name, get(prefix + name, str(default)), 0, 1_000_000)

    d = RateLimitSettings()
    return RateLimitSettings(
        orders_per_hour=limit("ORDERS_PER_HOUR", d.orders_per_hour),
        concurrent_orders=limit("CONCURRENT_ORDERS", d.concurrent_orders),
        key_change_per_hour=limit("KEY_CHANGE_PER_HOUR", d.key_change_per_hour),
        challenge_responds_per_hour=limit(
            "CHALLENGE_RESPONDS_PER_HOUR", d.challenge_responds_per_hour
        ),
        new_accounts_per_ip_per_hour=limit(
            "NEW_ACCOUNTS_PER_IP_PER_HOUR", d.new_accounts_per_ip_per_hour
        ),
    )


def _duration_or_off(name: str, text: str) -> timedelta:
    """A duration, or ``0`` to turn the feature off (design notes: GC_INTERVAL=0)."""
    if text.strip() in ("0", "0s", "0m", "0h"):
        return timedelta(0)
    return parse_duration(name, text)


def _reconcile_after(name: str, text: str) -> timedelta:
    """A duration of at least RECONCILE_AFTER_MIN (see there for why)."""
    value = parse_duration(name, text)
    if value < RECONCILE_AFTER_MIN:
        raise ConfigError(
            f"{name}: {text!r} must be at least {int(RECONCILE_AFTER_MIN.total_seconds())}s: "
            "a live finalize may keep an order processing for up to about 45 s"
        )
    return value


def _validation_settings(get: _Getter, prefix: str) -> ValidationSettings:
    def cap(name: str) -> int:
        return _int(prefix + name, get(prefix + name, "10"), 1, 1000)

    def port(name: str, default: str) -> int:
        return _int(prefix + name, get(prefix + name, default), 1, 65535)

    networks = _csv(get(prefix + "VALIDATION_NETWORKS"))
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{prefix}VALIDATION_NETWORKS: {net!r} is not a CIDR") from None
    return ValidationSettings(
        http01_concurrency=cap("HTTP01_CONCURRENCY"),
        dns01_concurrency=cap("DNS01_CONCURRENCY"),
        tlsalpn01_concurrency=cap("TLSALPN01_CONCURRENCY"),
        dns01_resolvers=tuple(
            _listen(prefix + "DNS01_RESOLVER", item)
            for item in _csv(get(prefix + "DNS01_RESOLVER"))
        ),
        timeout=parse_duration(
            prefix + "VALIDATION_TIMEOUT", get(prefix + "VALIDATION_TIMEOUT", "30s")
        ),
        http_port=port("VALIDATION_HTTP_PORT", "80"),
        tls_port=port("VALIDATION_TLS_PORT", "443"),
        allow_loopback=_bool(
            prefix + "VALIDATION_ALLOW_LOOPBACK",
            get(prefix + "VALIDATION_ALLOW_LOOPBACK", "false"),
        ),
        networks=networks,
        authz_reuse=_bool(prefix + "AUTHZ_REUSE", get(prefix + "AUTHZ_REUSE", "true")),
        caa_recheck_after=parse_duration(
            prefix + "CAA_RECHECK_AFTER", get(prefix + "CAA_RECHECK_AFTER", "8h")
        ),
        retry_after=parse_duration(prefix + "RETRY_AFTER", get(prefix + "RETRY_AFTER", "1s")),
    )


class _Getter(Protocol):
    def __call__(self, name: str, default: str = "") -> str: ...


def is_valid_profile_id(text: str) -> bool:
    return bool(_PROFILE_ID.fullmatch(text))
