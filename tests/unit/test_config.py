"""Settings from the environment: every variable, its default, an override, bad values."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from certctl.config import (
    CA_KEY_TYPES,
    ENV_VARS,
    RECONCILE_AFTER_MIN,
    AcmeServerSettings,
    ConfigError,
    RateLimitSettings,
    Settings,
    ValidationSettings,
    is_valid_profile_id,
    load_settings,
    parse_duration,
)
from certctl.domain.model import AuthMode

ACME = "CERTCTL_ACME_SERVER_"


def settings(**env: str) -> Settings:
    return load_settings(env)


def error(**env: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


def value_of(s: Settings, path: str) -> Any:
    obj: Any = s
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# --- defaults ------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "data_dir": Path("data"),
    "listen_host": "127.0.0.1",
    "listen_port": 8443,
    "database_url": "",
    "redis_url": "",
    "plain_http": False,
    "workers": 1,
    "ca_key_type": "ecdsa-p256",
    "tls_hostnames": (),
    "log_level": "INFO",
    "sqlite_synchronous": "FULL",
    "acme.enabled": True,  # deliberate: the ACME server is the product's core
    "acme.default_auth_mode": AuthMode.TRUST_AUTHENTICATED,
    "acme.default_profile_id": "default",
    "acme.nonce_ttl": timedelta(minutes=5),
    "acme.order_ttl": timedelta(hours=24),
    "acme.authz_ttl": timedelta(hours=24),
    "acme.tos_url": "",
    "acme.website": "",
    "acme.caa_identities": (),
    "acme.eab_required": False,
    "acme.orders_page_size": 100,
    "acme.max_body_bytes": 65536,
    "acme.handler_threads": 0,
    "acme.external_url": "",
    "acme.ari_enabled": True,
    "acme.ari_poll_interval": timedelta(hours=6),
    "acme.crl_generation_interval": timedelta(hours=1),
    "acme.pki_base_url": "",
    "acme.pki_rate_limit_per_second": 50,
    "acme.pki_rate_limit_burst": 100,
    "acme.gc_interval": timedelta(minutes=1),
    "acme.reconcile_after": timedelta(minutes=2),
    "acme.validation.http01_concurrency": 10,
    "acme.validation.dns01_concurrency": 10,
    "acme.validation.tlsalpn01_concurrency": 10,
    "acme.validation.dns01_resolvers": (),
    "acme.validation.timeout": timedelta(seconds=30),
    "acme.validation.http_port": 80,
    "acme.validation.tls_port": 443,
    "acme.validation.allow_loopback": False,
    "acme.validation.networks": (),
    "acme.validation.authz_reuse": True,
    "acme.validation.caa_recheck_after": timedelta(hours=8),
    "acme.validation.retry_after": timedelta(seconds=1),
    "acme.rate_limits.orders_per_hour": 100,
    "acme.rate_limits.concurrent_orders": 5,
    "acme.rate_limits.key_change_per_hour": 5,
    "acme.rate_limits.challenge_responds_per_hour": 60,
    "acme.rate_limits.new_accounts_per_ip_per_hour": 50,
}


def test_empty_environment_gives_every_default() -> None:
    s = settings()
    for path, expected in DEFAULTS.items():
        assert value_of(s, path) == expected, path
    assert s == Settings()  # the dataclass defaults agree with the env defaults
    assert s.acme == AcmeServerSettings()


def test_defaults_cover_every_field() -> None:
    names = {f.name for f in fields(Settings) if f.name != "acme"}
    nested = {"validation", "rate_limits"}
    names |= {f"acme.{f.name}" for f in fields(AcmeServerSettings) if f.name not in nested}
    names |= {f"acme.validation.{f.name}" for f in fields(ValidationSettings)}
    names |= {f"acme.rate_limits.{f.name}" for f in fields(RateLimitSettings)}
    assert names == set(DEFAULTS)


def test_unrelated_variables_are_ignored() -> None:
    assert settings(CERTCTL_ACME_SERVER_NOPE="x", HOME="/root", CERTCTL_X="1") == Settings()


# --- overrides: (variable, text, settings path, expected) -----------------------------

OVERRIDES: list[tuple[str, str, str, Any]] = [
    ("CERTCTL_DATA_DIR", "/srv/certctl", "data_dir", Path("/srv/certctl")),
    ("CERTCTL_LISTEN", "0.0.0.0:443", "listen_port", 443),
    ("CERTCTL_DATABASE_URL", "postgresql+psycopg://u@db/certctl", "database_url", None),
    ("CERTCTL_PLAIN_HTTP", "true", "plain_http", True),
    ("CERTCTL_WORKERS", "8", "workers", 8),
    ("CERTCTL_CA_KEY_TYPE", "RSA-3072", "ca_key_type", "rsa-3072"),
    ("CERTCTL_TLS_HOSTNAMES", " ca.example , 10.0.0.5,,", "tls_hostnames", None),
    ("CERTCTL_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("CERTCTL_SQLITE_SYNCHRONOUS", " normal ", "sqlite_synchronous", "NORMAL"),
    (ACME + "ENABLED", "false", "acme.enabled", False),
    (ACME + "DEFAULT_AUTH_MODE", "challenge", "acme.default_auth_mode", AuthMode.CHALLENGE),
    (ACME + "DEFAULT_PROFILE_ID", "corp_1-x", "acme.default_profile_id", "corp_1-x"),
    (ACME + "NONCE_TTL", "90s", "acme.nonce_ttl", timedelta(seconds=90)),
    (ACME + "ORDER_TTL", "1h30m", "acme.order_ttl", timedelta(minutes=90)),
    (ACME + "AUTHZ_TTL", "2h", "acme.authz_ttl", timedelta(hours=2)),
    (ACME + "TOS_URL", "https://ca.example/tos", "acme.tos_url", None),
    (ACME + "WEBSITE", "http://ca.example/", "acme.website", None),
    (ACME + "CAA_IDENTITIES", "ca.example, pki.example", "acme.caa_identities", None),
    (ACME + "EAB_REQUIRED", "yes", "acme.eab_required", True),
    (ACME + "ORDERS_PAGE_SIZE", "25", "acme.orders_page_size", 25),
    (ACME + "MAX_BODY_BYTES", "1024", "acme.max_body_bytes", 1024),
    (ACME + "HANDLER_THREADS", "12", "acme.handler_threads", 12),
    (ACME + "HTTP01_CONCURRENCY", "3", "acme.validation.http01_concurrency", 3),
    (ACME + "DNS01_CONCURRENCY", "4", "acme.validation.dns01_concurrency", 4),
    (ACME + "TLSALPN01_CONCURRENCY", "5", "acme.validation.tlsalpn01_concurrency", 5),
    (
        ACME + "DNS01_RESOLVER",
        "127.0.0.1:5353, [::1]:53",
        "acme.validation.dns01_resolvers",
        (("127.0.0.1", 5353), ("::1", 53)),
    ),
    (ACME + "VALIDATION_TIMEOUT", "5s", "acme.validation.timeout", timedelta(seconds=5)),
    (ACME + "VALIDATION_HTTP_PORT", "5002", "acme.validation.http_port", 5002),
    (ACME + "VALIDATION_TLS_PORT", "5001", "acme.validation.tls_port", 5001),
    (ACME + "VALIDATION_ALLOW_LOOPBACK", "true", "acme.validation.allow_loopback", True),
    (
        ACME + "VALIDATION_NETWORKS",
        "10.0.0.0/8,fd00::/8",
        "acme.validation.networks",
        ("10.0.0.0/8", "fd00::/8"),
    ),
    (ACME + "AUTHZ_REUSE", "false", "acme.validation.authz_reuse", False),
    (ACME + "CAA_RECHECK_AFTER", "1h", "acme.validation.caa_recheck_after", timedelta(hours=1)),
    (ACME + "RETRY_AFTER", "3s", "acme.validation.retry_after", timedelta(seconds=3)),
    (ACME + "EXTERNAL_URL", "https://ca.example:8443", "acme.external_url", None),
    (ACME + "ARI_ENABLED", "false", "acme.ari_enabled", False),
    (ACME + "ARI_POLL_INTERVAL", "1h", "acme.ari_poll_interval", timedelta(hours=1)),
    (
        "CERTCTL_CRL_GENERATION_INTERVAL",
        "10m",
        "acme.crl_generation_interval",
        timedelta(minutes=10),
    ),
    ("CERTCTL_PKI_BASE_URL", "http://pki.example", "acme.pki_base_url", "http://pki.example"),
    ("CERTCTL_PKI_RATE_LIMIT_PER_SECOND", "0", "acme.pki_rate_limit_per_second", 0),
    ("CERTCTL_PKI_RATE_LIMIT_BURST", "7", "acme.pki_rate_limit_burst", 7),
    (ACME + "GC_INTERVAL", "0", "acme.gc_interval", timedelta(0)),
    (ACME + "RECONCILE_AFTER", "5m30s", "acme.reconcile_after", timedelta(minutes=5, seconds=30)),
    (ACME + "RATE_LIMIT_ORDERS_PER_HOUR", "0", "acme.rate_limits.orders_per_hour", 0),
    (ACME + "RATE_LIMIT_CONCURRENT_ORDERS", "50", "acme.rate_limits.concurrent_orders", 50),
    (ACME + "RATE_LIMIT_KEY_CHANGE_PER_HOUR", "1", "acme.rate_limits.key_change_per_hour", 1),
    (
        ACME + "RATE_LIMIT_CHALLENGE_RESPONDS_PER_HOUR",
        "1000000",
        "acme.rate_limits.challenge_responds_per_hour",
        1_000_000,
    ),
    (
        ACME + "RATE_LIMIT_NEW_ACCOUNTS_PER_IP_PER_HOUR",
        " 7 ",
        "acme.rate_limits.new_accounts_per_ip_per_hour",
        7,
    ),
    ("CERTCTL_REDIS_URL", "redis://127.0.0.1:6379/0", "redis_url", "redis://127.0.0.1:6379/0"),
]
EXPECTED_SPECIAL: dict[str, Any] = {
    "CERTCTL_DATABASE_URL": "postgresql+psycopg://u@db/certctl",
    "CERTCTL_TLS_HOSTNAMES": ("ca.example", "10.0.0.5"),
    ACME + "TOS_URL": "https://ca.example/tos",
    ACME + "WEBSITE": "http://ca.example/",
    ACME + "CAA_IDENTITIES": ("ca.example", "pki.example"),
    ACME + "EXTERNAL_URL": "https://ca.example:8443",
}


@pytest.mark.parametrize(
    ("name", "text", "path", "expected"), OVERRIDES, ids=[o[0] for o in OVERRIDES]
)
def test_each_variable_overrides_its_setting(
    name: str, text: str, path: str, expected: Any
) -> None:
    want = EXPECTED_SPECIAL.get(name, expected)
    s = settings(**{name: text})
    assert value_of(s, path) == want
    assert want != DEFAULTS[path]
    # Nothing else moved.
    for other, default in DEFAULTS.items():
        if other != path and not (name == "CERTCTL_LISTEN" and other == "listen_host"):
            assert value_of(s, other) == default, other


def test_overrides_cover_every_env_var() -> None:
    assert [o[0] for o in OVERRIDES] == list(ENV_VARS)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("0.0.0.0:443", "0.0.0.0", 443),
        ("localhost:1", "localhost", 1),
        ("ca.example:65535", "ca.example", 65535),
        ("[::1]:8443", "::1", 8443),
        ("[::]:8443", "::", 8443),
        (" 127.0.0.1:9000 ", "127.0.0.1", 9000),
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    s = settings(CERTCTL_LISTEN=text)
    assert (s.listen_host, s.listen_port) == (host, port)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " On "])
def test_true_booleans(text: str) -> None:
    assert settings(CERTCTL_PLAIN_HTTP=text).plain_http is True
    assert settings(**{ACME + "EAB_REQUIRED": text}).acme.eab_required is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off"])
def test_false_booleans(text: str) -> None:
    assert settings(**{ACME + "ENABLED": text}).acme.enabled is False


@pytest.mark.parametrize("name", [n for n in ENV_VARS if n != ACME + "DEFAULT_PROFILE_ID"])
def test_set_but_empty_means_default(name: str) -> None:
    assert settings(**{name: ""}) == Settings()
    assert settings(**{name: "  "}) == Settings()


def test_empty_default_profile_id_turns_the_shorthand_off() -> None:
    # The one variable where empty is meaningful (design notes: no /acme/* shorthand).
    assert settings(**{ACME + "DEFAULT_PROFILE_ID": ""}).acme.default_profile_id == ""


@pytest.mark.parametrize("key_type", CA_KEY_TYPES)
def test_every_ca_key_type_is_accepted(key_type: str) -> None:
    assert settings(CERTCTL_CA_KEY_TYPE=key_type).ca_key_type == key_type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("24h", timedelta(hours=24)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h0m5s", timedelta(hours=1, seconds=5)),
        ("90m", timedelta(minutes=90)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration("X", text) == expected


# --- bad values: every one names its variable ----------------------------------------

BAD: list[tuple[str, str]] = [
    ("CERTCTL_LISTEN", "8443"),
    ("CERTCTL_LISTEN", ":8443"),
    ("CERTCTL_LISTEN", "localhost:"),
    ("CERTCTL_LISTEN", "localhost:http"),
    ("CERTCTL_LISTEN", "localhost:0"),
    ("CERTCTL_LISTEN", "localhost:65536"),
    ("CERTCTL_LISTEN", "::1:8443"),  # ambiguous without brackets
    ("CERTCTL_LISTEN", "[::1:8443"),
    ("CERTCTL_LISTEN", "[localhost]:8443"),
    ("CERTCTL_LISTEN", "a b:8443"),
    ("CERTCTL_DATABASE_URL", "not a url"),
    ("CERTCTL_DATABASE_URL", "mysql://u@db/certctl"),
    ("CERTCTL_PLAIN_HTTP", "maybe"),
    ("CERTCTL_PLAIN_HTTP", "2"),
    ("CERTCTL_WORKERS", "0"),
    ("CERTCTL_WORKERS", "65"),
    ("CERTCTL_WORKERS", "-1"),
    ("CERTCTL_WORKERS", "two"),
    ("CERTCTL_WORKERS", "1.5"),
    ("CERTCTL_WORKERS", "1_0"),
    ("CERTCTL_CA_KEY_TYPE", "rsa-1024"),
    ("CERTCTL_CA_KEY_TYPE", "ed25519"),
    ("CERTCTL_LOG_LEVEL", "verbose"),
    ("CERTCTL_SQLITE_SYNCHRONOUS", "OFF"),
    ("CERTCTL_SQLITE_SYNCHRONOUS", "extra"),
    (ACME + "ENABLED", "enabled"),
    (ACME + "DEFAULT_AUTH_MODE", "none"),
    (ACME + "DEFAULT_AUTH_MODE", "Challenge"),
    (ACME + "DEFAULT_PROFILE_ID", "Corp"),
    (ACME + "DEFAULT_PROFILE_ID", "-corp"),
    (ACME + "DEFAULT_PROFILE_ID", "a/b"),
    (ACME + "DEFAULT_PROFILE_ID", "x" * 64),
    (ACME + "NONCE_TTL", "5"),
    (ACME + "NONCE_TTL", "0s"),
    (ACME + "NONCE_TTL", "-5m"),
    (ACME + "ORDER_TTL", "1d"),
    (ACME + "ORDER_TTL", "5M"),
    (ACME + "AUTHZ_TTL", "30m1h"),
    (ACME + "AUTHZ_TTL", "h"),
    (ACME + "TOS_URL", "tos.html"),
    (ACME + "WEBSITE", "ftp://ca.example"),
    (ACME + "EAB_REQUIRED", "required"),
    (ACME + "ORDERS_PAGE_SIZE", "0"),
    (ACME + "ORDERS_PAGE_SIZE", "1001"),
    (ACME + "MAX_BODY_BYTES", "1023"),
    (ACME + "MAX_BODY_BYTES", str((1 << 20) + 1)),
    (ACME + "MAX_BODY_BYTES", "64k"),
    (ACME + "HANDLER_THREADS", "21"),  # more than the database pool holds
    (ACME + "HANDLER_THREADS", "-1"),
    ("CERTCTL_PKI_BASE_URL", "pki.example"),
    ("CERTCTL_PKI_BASE_URL", "http://pki.example/?x=1"),
    ("CERTCTL_PKI_BASE_URL", "http://pki.example/a b"),
    ("CERTCTL_PKI_RATE_LIMIT_PER_SECOND", "-1"),
    ("CERTCTL_PKI_RATE_LIMIT_PER_SECOND", "2.5"),
    ("CERTCTL_PKI_RATE_LIMIT_BURST", "0"),
    (ACME + "RECONCILE_AFTER", "0"),
    (ACME + "RECONCILE_AFTER", "0s"),
    (ACME + "RECONCILE_AFTER", "-2m"),
    (ACME + "RECONCILE_AFTER", "59s"),
    (ACME + "RECONCILE_AFTER", "120"),
    (ACME + "RATE_LIMIT_ORDERS_PER_HOUR", "-1"),
    (ACME + "RATE_LIMIT_ORDERS_PER_HOUR", "100/h"),
    (ACME + "RATE_LIMIT_CONCURRENT_ORDERS", "1000001"),
    (ACME + "RATE_LIMIT_KEY_CHANGE_PER_HOUR", "five"),
    (ACME + "RATE_LIMIT_CHALLENGE_RESPONDS_PER_HOUR", "1e3"),
    (ACME + "RATE_LIMIT_NEW_ACCOUNTS_PER_IP_PER_HOUR", "-50"),
    ("CERTCTL_REDIS_URL", "127.0.0.1:6379"),
    ("CERTCTL_REDIS_URL", "http://127.0.0.1:6379"),
    ("CERTCTL_REDIS_URL", "redis://"),
    ("CERTCTL_REDIS_URL", "redis://a b"),
]


@pytest.mark.parametrize(("name", "text"), BAD, ids=[f"{n}={t}" for n, t in BAD])
def test_bad_values_raise_config_error_naming_the_variable(name: str, text: str) -> None:
    err = error(**{name: text})
    assert str(err).startswith(f"{name}:")


@pytest.mark.parametrize("text", ["1m", "60s", "0h1m", "24h"])
def test_reconcile_after_accepts_its_floor_and_above(text: str) -> None:
    got = settings(**{ACME + "RECONCILE_AFTER": text}).acme.reconcile_after
    assert got == parse_duration("X", text) >= RECONCILE_AFTER_MIN


@pytest.mark.parametrize("text", ["1s", "30s", "45s", "59s"])
def test_reconcile_after_below_the_finalize_budget_is_refused(text: str) -> None:
    # A live finalize may hold an order processing for about 45 s (pool and SQLite lock
    # waits): a smaller threshold would let a starting replica fail it mid-flight.
    err = error(**{ACME + "RECONCILE_AFTER": text})
    assert str(err).startswith(f"{ACME}RECONCILE_AFTER:")
    assert "at least 60s" in str(err)


def test_reconcile_after_default_respects_its_floor() -> None:
    assert AcmeServerSettings().reconcile_after >= RECONCILE_AFTER_MIN


def test_database_url_error_does_not_echo_credentials() -> None:
    err = error(CERTCTL_DATABASE_URL="mysql://admin:hunter2@db/certctl")
    assert "hunter2" not in str(err)


def test_redis_url_error_does_not_echo_credentials() -> None:
    err = error(CERTCTL_REDIS_URL="http://:hunter2@cache:6379/0")
    assert "hunter2" not in str(err)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@cache.internal:6380/15",
        "rediss://cache.example:6380",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_redis_url_forms(url: str) -> None:
    assert settings(CERTCTL_REDIS_URL=url).redis_url == url


def test_range_limits_are_inclusive() -> None:
    assert settings(CERTCTL_WORKERS="64").workers == 64
    assert settings(**{ACME + "ORDERS_PAGE_SIZE": "1000"}).acme.orders_page_size == 1000
    assert settings(**{ACME + "ORDERS_PAGE_SIZE": "1"}).acme.orders_page_size == 1
    big = str(1 << 20)
    assert settings(**{ACME + "MAX_BODY_BYTES": big}).acme.max_body_bytes == 1 << 20


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- derived properties --------------------------------------------------------------


def test_embedded_sqlite_lives_in_the_data_dir(tmp_path: Path) -> None:
    s = settings(CERTCTL_DATA_DIR=str(tmp_path))
    assert s.effective_database_url == f"sqlite+pysqlite:///{tmp_path.resolve()}/certctl.db"
    assert s.uses_sqlite


def test_database_url_replaces_the_embedded_store() -> None:
    s = settings(CERTCTL_DATABASE_URL=" postgresql+psycopg://u@db/x ")
    assert s.effective_database_url == "postgresql+psycopg://u@db/x"
    assert not s.uses_sqlite


PROFILE_IDS = [
    ("default", True),
    ("a", True),
    ("corp-2_x", True),
    ("9", True),
    ("a" * 63, True),
    ("", False),
    ("Corp", False),
    ("_a", False),
    ("a.b", False),
    ("a" * 64, False),
    ("abc\n", False),  # "$" would match before a final newline
    ("abc\r\n", False),
]


@pytest.mark.parametrize(("text", "valid"), PROFILE_IDS)
def test_profile_ids(text: str, valid: bool) -> None:
    assert is_valid_profile_id(text) is valid
