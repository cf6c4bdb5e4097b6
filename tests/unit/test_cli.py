"""The command line, run in-process (``certctl.cli.main.main``) against a tmp data dir."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certctl.cli.main import main, settings_from
from certctl.config import ConfigError, load_settings
from certctl.domain.model import KEY_ALGORITHMS, CertificateVersion
from certctl.ra.ratelimits import Limit
from certctl.storage import inventory
from certctl.storage.db import Database


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CERTCTL_* from the developer's shell; tests set variables through monkeypatch."""
    for name in list(os.environ):
        if name.startswith("CERTCTL_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], data_dir: Path) -> RunCli:
    return RunCli(capsys, data_dir)


class RunCli:
    def __init__(self, capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
        self.capsys = capsys
        self.data_dir = data_dir

    def __call__(self, *argv: str, data_dir: bool = True) -> Result:
        """Run ``certctl argv... --data-dir <tmp>``; SystemExit (argparse) becomes a code."""
        args = [*argv, "--data-dir", str(self.data_dir)] if data_dir else list(argv)
        self.capsys.readouterr()
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            # `init` and `serve` configure process-wide logging; a real process ends there.
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *argv: str) -> str:
        result = self(*argv)
        assert result.code == 0, result.err
        return result.out


LIMIT_NAMES = [limit.value for limit in Limit]

# --- help ----------------------------------------------------------------------------

HELP: list[tuple[list[str], list[str]]] = [
    ([], ["serve", "init", "ca", "profile", "cert", "eab"]),
    (["serve"], ["--listen", "--workers", "--plain-http", "--data-dir", "--database-url"]),
    (["init"], ["--data-dir", "--database-url"]),
    (["ca"], ["root"]),
    (["ca", "root"], ["--data-dir"]),
    (["profile"], ["create", "list", "show", "update"]),
    (
        ["profile", "create"],
        [
            "--acme-auth-mode",
            "trust_authenticated",
            "challenge",
            "--key-algorithms",
            "--max-validity-days",
            "--issuer",
            "--ekus",
            "serverAuth",
            "--must-staple",
            "--enabled",
            "--name",
            "--description",
            *KEY_ALGORITHMS,
        ],
    ),
    (["profile", "update"], ["--acme-auth-mode", "--key-algorithms", "--max-validity-days"]),
    (["profile", "show"], ["id"]),
    (["profile", "list"], ["--data-dir"]),
    (["cert"], ["list", "show"]),
    (["cert", "list"], ["--limit"]),
    (["cert", "show"], ["serial"]),
    (["eab"], ["create", "list", "revoke"]),
    (["eab", "create"], ["--profile", "--reusable", "--expires-in", "--allowed-names"]),
    (["eab", "list"], ["--data-dir"]),
    (["eab", "revoke"], ["kid"]),
    (["ratelimit"], ["set", "list", "delete", *LIMIT_NAMES, "CERTCTL_ACME_SERVER_RATE_LIMIT_"]),
    (["ratelimit", "set"], ["--account", "--profile", "--limit", "--value", *LIMIT_NAMES]),
    (["ratelimit", "list"], ["--data-dir"]),
    (["ratelimit", "delete"], ["--account", "--profile", "--limit", *LIMIT_NAMES]),
]


@pytest.mark.parametrize(("argv", "words"), HELP, ids=[" ".join(h[0]) or "certctl" for h in HELP])
def test_help_exits_zero_and_describes_the_options(
    run: RunCli, argv: list[str], words: list[str]
) -> None:
    result = run(*argv, "--help", data_dir=False)
    assert result.code == 0
    assert result.out.startswith("usage: certctl")
    for word in words:
        assert word in result.out, word


def test_no_command_is_a_usage_error(run: RunCli) -> None:
    result = run(data_dir=False)
    assert result.code == 2
    assert "usage: certctl" in result.err


# --- init, profiles ------------------------------------------------------------------


def test_profile_create_show_update_list(run: RunCli, data_dir: Path) -> None:
    out = run.ok("init")
    assert "default profile: default" in out
    assert (data_dir / "certctl.db").exists()

    created = json.loads(
        run.ok(
            "profile",
            "create",
            "corp",
            "--acme-auth-mode",
            "challenge",
            "--key-algorithms",
            "EC-P256",
            "--max-validity-days",
            "30",
        )
    )
    shown = json.loads(run.ok("profile", "show", "corp"))
    assert shown == created
    assert shown["id"] == "corp"
    assert shown["acme_auth_mode"] == "challenge"
    assert shown["key_algorithms"] == ["EC-P256"]
    assert shown["max_validity_days"] == 30
    assert shown["ekus"] == ["serverAuth"]
    assert shown["enabled"] is True
    default = json.loads(run.ok("profile", "show", "default"))
    assert shown["issuer_id"] == default["issuer_id"]
    assert default["acme_auth_mode"] == "trust_authenticated"

    updated = json.loads(
        run.ok("profile", "update", "corp", "--acme-auth-mode", "trust_authenticated")
    )
    assert updated["acme_auth_mode"] == "trust_authenticated"
    # Only the option given changed.
    assert {k: v for k, v in updated.items() if k != "acme_auth_mode"} == {
        k: v for k, v in shown.items() if k != "acme_auth_mode"
    }
    assert json.loads(run.ok("profile", "show", "corp")) == updated

    lines = run.ok("profile", "list").splitlines()
    assert lines[0].split() == ["ID", "MODE", "ISSUER", "MAX_DAYS", "KEYS", "ENABLED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"corp", "default"}
    assert rows["corp"][1:2] == ["trust_authenticated"]
    assert rows["corp"][3:] == ["30", "EC-P256", "yes"]
    assert rows["default"][1] == "trust_authenticated"


def test_profile_update_of_several_options(run: RunCli) -> None:
    run.ok("profile", "create", "web")
    updated = json.loads(
        run.ok(
            "profile",
            "update",
            "web",
            "--ekus",
            "serverAuth,clientAuth",
            "--must-staple",
            "--no-enabled",
            "--description",
            "internal web",
        )
    )
    assert updated["ekus"] == ["serverAuth", "clientAuth"]
    assert updated["must_staple"] is True
    assert updated["enabled"] is False
    assert updated["description"] == "internal web"


def test_default_auth_mode_setting_applies_to_new_profiles(
    run: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTCTL_ACME_SERVER_DEFAULT_AUTH_MODE", "challenge")
    created = json.loads(run.ok("profile", "create", "strict"))
    assert created["acme_auth_mode"] == "challenge"


INVALID: list[tuple[list[str], str]] = [
    (["bad-keys", "--key-algorithms", "EC-P999"], "key algorithms must be among"),
    (["no-keys", "--key-algorithms", ","], "key algorithms must be among"),
    (["bad-issuer", "--issuer", "iss-nope"], "unknown issuer 'iss-nope'"),
    (["Bad_ID"], "profile id"),
    (["a.b"], "profile id"),
    (["x" * 64], "profile id"),
    (["too-long", "--max-validity-days", "0"], "max validity"),
    (["bad-eku", "--ekus", "codeSigning"], "EKUs must be among"),
    (["default"], "already exists"),
]


@pytest.mark.parametrize(("argv", "message"), INVALID, ids=[i[1] + ":" + i[0][0] for i in INVALID])
def test_invalid_profiles_fail_with_a_clear_message(
    run: RunCli, argv: list[str], message: str
) -> None:
    result = run("profile", "create", *argv)
    assert result.code != 0
    assert result.err.startswith("certctl: ")
    assert message in result.err
    assert "Traceback" not in result.err + result.out
    assert result.out == ""


def test_invalid_update_changes_nothing(run: RunCli) -> None:
    before = run.ok("profile", "show", "default")
    result = run("profile", "update", "default", "--key-algorithms", "DSA-1024")
    assert result.code == 1
    assert "key algorithms must be among" in result.err
    assert run.ok("profile", "show", "default") == before


@pytest.mark.parametrize("argv", [["show", "nope"], ["update", "nope", "--name", "x"]])
def test_unknown_profile(run: RunCli, argv: list[str]) -> None:
    result = run("profile", *argv)
    assert result.code == 1
    assert result.err == "certctl: no profile 'nope'\n"


def test_bad_choice_is_an_argparse_error(run: RunCli) -> None:
    result = run("profile", "create", "x", "--acme-auth-mode", "none")
    assert result.code == 2
    assert "invalid choice" in result.err


# --- ca root -------------------------------------------------------------------------


def test_ca_root_prints_the_ca_certificate(run: RunCli) -> None:
    pem = run.ok("ca", "root")
    (cert,) = x509.load_pem_x509_certificates(pem.encode())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    # The same root every time, and the one `init` then builds on.
    assert run.ok("ca", "root") == pem
    run.ok("init")
    assert run.ok("ca", "root") == pem


# --- cert list / show ----------------------------------------------------------------


def test_cert_list_on_an_empty_inventory(run: RunCli) -> None:
    out = run.ok("cert", "list")
    assert out.split() == ["ID", "SERIAL", "PROFILE", "KEY", "NOT_AFTER", "STATUS"]


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_cert_list_limit_must_be_positive(run: RunCli, limit: str) -> None:
    result = run("cert", "list", "--limit", limit)
    assert result.code == 2
    assert "positive integer" in result.err


def _add_certificate(data_dir: Path) -> CertificateVersion:
    settings = load_settings({"CERTCTL_DATA_DIR": str(data_dir)})
    db = Database(settings.effective_database_url)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        with db.write() as conn:
            profile = inventory.get_profile(conn, "default")
            assert profile is not None
            version = CertificateVersion(
                id="cert-1",
                certificate_id="mc-1",
                serial="abcd",
                fingerprint_sha256="ff" * 32,
                not_before=now,
                not_after=now + timedelta(days=90),
                pem_chain="PEM",
                csr_pem="CSR",
                key_algorithm="EC",
                key_size=256,
                source="acme",
                profile_id=profile.id,
                issuer_id=profile.issuer_id,
                acme_account_id=None,
                acme_order_id=None,
                created_at=now,
            )
            inventory.insert_certificate(
                conn, version, name="n", common_name="a.example", sans=["a.example"], now=now
            )
    finally:
        db.dispose()
    return version


def test_cert_list_and_show(run: RunCli, data_dir: Path) -> None:
    run.ok("init")
    version = _add_certificate(data_dir)
    lines = run.ok("cert", "list").splitlines()
    row = ["cert-1", "abcd", "default", "EC-256", "2030-04-01T00:00:00Z", "active"]
    assert lines[1].split() == row
    assert len(run.ok("cert", "list", "--limit", "1").splitlines()) == 2
    for key in ("cert-1", "mc-1", "abcd", "00:AB:CD", "ABCD"):
        shown = json.loads(run.ok("cert", "show", key))
        assert shown["id"] == version.id
        assert shown["serial"] == "abcd"
    missing = run("cert", "show", "abce")
    assert missing.code == 1
    assert missing.err == "certctl: no certificate 'abce'\n"


# --- settings and errors -------------------------------------------------------------


def test_flags_do_not_leak_into_the_environment(
    run: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.ok("profile", "list", "--database-url", f"sqlite+pysqlite:///{tmp_path / 'x.db'}")
    assert not [name for name in os.environ if name.startswith("CERTCTL_")]
    # A second command without the flags uses the environment's value, not the last flag.
    other = tmp_path / "other"
    monkeypatch.setenv("CERTCTL_DATA_DIR", str(other))
    result = run("init", data_dir=False)
    assert result.code == 0, result.err
    assert (other / "certctl.db").exists()


def test_serve_exports_its_flags_for_the_workers() -> None:
    environ: dict[str, str] = {"CERTCTL_WORKERS": "2"}
    args = argparse.Namespace(
        command="serve",
        data_dir="/srv/x",
        database_url=None,
        listen="0.0.0.0:9443",
        workers=None,
        plain_http=True,
    )
    settings = settings_from(args, environ)
    assert settings.listen_port == 9443 and settings.workers == 2 and settings.plain_http
    assert environ == {
        "CERTCTL_WORKERS": "2",
        "CERTCTL_DATA_DIR": "/srv/x",
        "CERTCTL_LISTEN": "0.0.0.0:9443",
        "CERTCTL_PLAIN_HTTP": "true",
    }
    args.command = "init"
    untouched: dict[str, str] = {}
    assert settings_from(args, untouched).data_dir == Path("/srv/x")
    assert untouched == {}


def test_serve_flags_are_validated_like_the_environment() -> None:
    args = argparse.Namespace(command="serve", workers=0, listen=None, plain_http=False)
    with pytest.raises(ConfigError, match=r"^CERTCTL_WORKERS:"):
        settings_from(args, {})
    args = argparse.Namespace(command="serve", workers=None, listen="nohost", plain_http=False)
    with pytest.raises(ConfigError, match=r"^CERTCTL_LISTEN:"):
        settings_from(args, {})


def test_configuration_errors_exit_2_naming_the_variable(
    run: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTCTL_WORKERS", "0")
    result = run("profile", "list")
    assert result.code == 2
    assert result.err.startswith("certctl: configuration error: CERTCTL_WORKERS:")
    assert "Traceback" not in result.err


def test_unreachable_database_is_one_line(run: RunCli) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/certctl?connect_timeout=2"
    result = run("profile", "list", "--database-url", url)
    assert result.code == 1
    assert result.err.startswith("certctl: database error: ")
    assert len(result.err.strip().splitlines()) == 1


def test_profile_identifier_policy_options(run: RunCli) -> None:
    created = run(
        "profile",
        "create",
        "corp",
        "--allowed-names",
        "example.com,corp.test",
        "--denied-names",
        "secret.example.com",
        "--no-allow-wildcards",
        "--allow-ip",
        "--ip-networks",
        "10.0.0.0/8",
        "--max-identifiers",
        "5",
        "--caa-check",
        "--eab-required",
    )
    assert created.code == 0, created.err
    shown = json.loads(run("profile", "show", "corp").out)
    assert shown["identifier_policy"] == {
        "allowed_names": ["example.com", "corp.test"],
        "denied_names": ["secret.example.com"],
        "allow_wildcards": False,
        "allow_ip": True,
        "ip_networks": ["10.0.0.0/8"],
        "max_identifiers": 5,
    }
    assert shown["caa_check"] is True and shown["eab_required"] is True
    # An update changes only what it names, inside the nested policy too.
    assert run("profile", "update", "corp", "--allow-wildcards").code == 0
    policy = json.loads(run("profile", "show", "corp").out)["identifier_policy"]
    assert policy["allow_wildcards"] is True and policy["allowed_names"] == [
        "example.com",
        "corp.test",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        ("--allowed-names", "Upper.test"),
        ("--denied-names", "a.*.test"),
        ("--ip-networks", "10.0.0.0/33"),
        ("--max-identifiers", "0"),
    ],
)
def test_profile_policy_validation(run: RunCli, bad: tuple[str, str]) -> None:
    result = run("profile", "create", "corp", *bad)
    assert result.code != 0
    assert "Traceback" not in result.err and result.err.strip()


def test_cert_revoke_and_ari_shift(run: RunCli, data_dir: Path) -> None:
    run.ok("init")
    _add_certificate(data_dir)
    # The ARI shift finds the active certificate; a revoked one is no longer shifted.
    assert "shifted 1 certificate(s)" in run.ok(
        "ari", "shift", "--serial", "AB:CD", "--end", "2030-02-01T00:00:00Z"
    )
    shown = json.loads(run.ok("cert", "show", "abcd"))
    assert shown["ari_window_end"].startswith("2030-02-01 00:00:00")
    assert run.ok("cert", "revoke", "abcd", "--reason", "superseded") == (
        "revoked abcd (superseded)\n"
    )
    shown = json.loads(run.ok("cert", "show", "abcd"))
    assert shown["status"] == "revoked" and shown["revocation_reason"] == 4
    again = run("cert", "revoke", "abcd")
    assert again.code == 1 and "already revoked" in again.err
    assert "shifted 0" in run.ok("ari", "shift", "--profile", "default", "--end", "now")


@pytest.mark.parametrize(
    "argv",
    [
        ["cert", "revoke", "abcd", "--reason", "bogus"],
        ["cert", "revoke", "abcd", "--reason", "7"],
        ["ari", "shift", "--end", "now"],
        ["ari", "shift", "--profile", "default", "--end", "tomorrow"],
        ["ari", "shift", "--profile", "default", "--end", "2030-01-01T00:00:00"],
    ],
)
def test_revoke_and_shift_refuse_bad_input(run: RunCli, argv: list[str]) -> None:
    run.ok("init")
    result = run(*argv)
    assert result.code != 0
    assert result.err.startswith("certctl: ") and "Traceback" not in result.err


# --- rate-limit overrides ------------------------------------------------------------


def test_ratelimit_set_list_delete(run: RunCli) -> None:
    run.ok("init")
    assert run.ok("ratelimit", "list").split() == ["SCOPE", "ID", "LIMIT", "VALUE", "UPDATED"]
    out = run.ok(
        "ratelimit", "set", "--profile", "default", "--limit", "orders_per_hour", "--value", "7"
    )
    assert out.strip() == "profile default: orders_per_hour = 7"
    run.ok("ratelimit", "set", "--profile", "default", "--limit", "orders_per_hour", "--value", "8")
    rows = run.ok("ratelimit", "list").splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:4] == ["profile", "default", "orders_per_hour", "8"]
    out = run.ok("ratelimit", "delete", "--profile", "default", "--limit", "orders_per_hour")
    assert "deleted" in out
    assert len(run.ok("ratelimit", "list").splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--account", "acct-nope", "--limit", "orders_per_hour", "--value", "1"], 1, "no account"),
        (["--profile", "nope", "--limit", "orders_per_hour", "--value", "1"], 1, "no profile"),
        (["--profile", "default", "--limit", "orders_per_hour", "--value", "-1"], 1, "0 (off)"),
        (["--profile", "default", "--limit", "per_day", "--value", "1"], 2, "invalid choice"),
        (["--limit", "orders_per_hour", "--value", "1"], 2, "--account"),
        (["--profile", "x", "--account", "y", "--limit", "orders_per_hour", "--value", "1"], 2, ""),
    ],
)
def test_ratelimit_refuses_bad_input(run: RunCli, argv: list[str], code: int, message: str) -> None:
    run.ok("init")
    result = run("ratelimit", "set", *argv)
    assert result.code == code
    assert message in result.err


def test_ratelimit_delete_of_nothing_fails(run: RunCli) -> None:
    run.ok("init")
    result = run("ratelimit", "delete", "--profile", "default", "--limit", "concurrent_orders")
    assert result.code == 1
    assert "no concurrent_orders override" in result.err
