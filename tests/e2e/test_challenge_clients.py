"""Real ACME clients (lego, certbot) proving control in challenge mode.

One served instance per database and module, with its validation ports fixed for its
lifetime (CERTCTL_ACME_SERVER_VALIDATION_HTTP_PORT/_TLS_PORT): the tests of a module run
one after another in one pytest worker, so each client binds those ports in turn. Names
resolve through pebble-challtestsrv (every A query answers 127.0.0.1), which also holds
the dns-01 TXT records the clients' hooks publish through its management API.

Each test checks that the server really validated (its validation counter for that
challenge type went up) and verifies the issued chain with ``openssl verify`` against
``certctl ca root``.
"""

from __future__ import annotations

import shlex
import ssl
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.certs import ECDSA_P256, KeyType, assert_issued, load_chain, write_pem
from tests.support.challtestsrv import ChallTestSrv, challtestsrv_executable
from tests.support.clients import (
    certbot_certonly_command,
    certbot_env,
    certbot_executable,
    certbot_log_tail,
    lego_env,
    lego_executable,
    run_client,
)
from tests.support.gating import require_or_skip
from tests.support.ports import free_port
from tests.support.postgres import POSTGRES_URL_ENV, fresh_database, unavailable_reason
from tests.support.server import ServedCertctl, run_certctl

pytestmark = pytest.mark.e2e

PROFILE = "chal"
KEY_TYPE = ECDSA_P256
MANAGEMENT_URL_ENV = "CHALLTESTSRV_MANAGEMENT_URL"
VALIDATIONS = "certctl_acme_challenge_validations"

# A dns-01 hook for both clients, talking to challtestsrv's management API.
#   lego exec provider: hook present|cleanup <fqdn> <value>
#   certbot manual hooks: hook present|cleanup, with CERTBOT_DOMAIN and CERTBOT_VALIDATION
HOOK = """\
import json
import os
import sys
import urllib.request

action = sys.argv[1]
if len(sys.argv) >= 4:
    fqdn, value = sys.argv[2], sys.argv[3]
else:
    fqdn = "_acme-challenge." + os.environ["CERTBOT_DOMAIN"] + "."
    value = os.environ.get("CERTBOT_VALIDATION", "")
if action == "present":
    endpoint, body = "set-txt", {"host": fqdn, "value": value}
elif action == "cleanup":
    endpoint, body = "clear-txt", {"host": fqdn}
else:
    sys.exit(0)
request = urllib.request.Request(
    os.environ["%(env)s"] + "/" + endpoint, data=json.dumps(body).encode(), method="POST"
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(request, timeout=10) as response:
    if response.status != 200:
        sys.exit("challtestsrv answered %%d" %% response.status)
"""


@dataclass(frozen=True)
class ChallengeServer:
    """A served instance whose ``chal`` profile is in challenge mode, and its DNS."""

    served: ServedCertctl
    dns: ChallTestSrv
    http_port: int
    tls_port: int

    @property
    def directory_url(self) -> str:
        return f"{self.served.base_url}/acme/profile/{PROFILE}/directory"

    @property
    def root_pem(self) -> Path:
        return self.served.root_pem_path

    def validations(self, challenge_type: str) -> float:
        """The server's count of successful validations of ``challenge_type``."""
        ctx = ssl.create_default_context(cafile=str(self.root_pem))
        with httpx.Client(verify=ctx, trust_env=False, timeout=10) as http:
            response = http.get(f"{self.served.base_url}/metrics")
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            if family.name != VALIDATIONS:
                continue
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == f"{VALIDATIONS}_total"
                    and labels.get("type") == challenge_type
                    and labels.get("outcome") == "valid"
                ):
                    return float(sample.value)
        return 0.0

    def diagnostics(self) -> str:
        return f"{self.served.log_tail()}\n--- challtestsrv ---\n{self.dns.log_tail()}"


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    executable = challtestsrv_executable()
    with ChallTestSrv(tmp_path_factory.mktemp("challtestsrv"), executable) as server:
        yield server


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Module-scoped here: one served instance per database for the whole module."""
    if request.param == "sqlite":
        yield None
        return
    reason = unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {POSTGRES_URL_ENV})")
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def challenge_server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    challtestsrv: ChallTestSrv,
) -> Iterator[ChallengeServer]:
    http_port, tls_port = free_port(), free_port()
    env = {
        "CERTCTL_ACME_SERVER_DNS01_RESOLVER": challtestsrv.resolver,
        "CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK": "true",
        "CERTCTL_ACME_SERVER_VALIDATION_HTTP_PORT": str(http_port),
        "CERTCTL_ACME_SERVER_VALIDATION_TLS_PORT": str(tls_port),
        "CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT": "10s",
    }
    workdir = tmp_path_factory.mktemp("certctl")
    with ServedCertctl(workdir, database_url, env=env) as served:
        created = run_certctl(
            [
                "profile",
                "create",
                PROFILE,
                "--acme-auth-mode",
                "challenge",
                "--data-dir",
                str(served.data_dir),
            ],
            database_url,
        )
        assert created.returncode == 0, created.stderr
        yield ChallengeServer(served, challtestsrv, http_port, tls_port)


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    """The dns-01 hook as an executable script (interpreter: the one running the tests)."""
    assert not any(c.isspace() for c in sys.executable), sys.executable
    path = tmp_path / "dns-hook"
    path.write_text(f"#!{sys.executable}\n" + HOOK % {"env": MANAGEMENT_URL_ENV})
    path.chmod(0o755)
    return path


# -- lego ------------------------------------------------------------------------------------


def lego_command(
    server: ChallengeServer, lego_path: Path, names: Sequence[str], solver: Sequence[str]
) -> list[str]:
    cmd = [
        lego_executable(),
        "--server",
        server.directory_url,
        "--email",
        "e2e@example.test",
        "--accept-tos",
        "--path",
        str(lego_path),
        "--key-type",
        KEY_TYPE.lego_key_type,
        *solver,
    ]
    for name in names:
        cmd += ["-d", name]
    return [*cmd, "run"]


def run_lego(
    server: ChallengeServer,
    tmp_path: Path,
    names: tuple[str, ...],
    solver: Sequence[str],
    extra_env: dict[str, str] | None = None,
) -> None:
    lego_path = tmp_path / "lego"
    env = lego_env(server.root_pem) | (extra_env or {})
    run_client(
        lego_command(server, lego_path, names, solver),
        env,
        cwd=tmp_path,
        extra_diagnostics=server.diagnostics,
    )
    certificates = lego_path / "certificates"
    # lego names the files after the first domain, "*" spelled "_".
    stem = names[0].replace("*", "_")
    bundle = load_chain(certificates / f"{stem}.crt")
    assert bundle[1:] == load_chain(certificates / f"{stem}.issuer.crt")
    assert_issued(
        leaf_pem=write_pem(tmp_path / "leaf.pem", bundle[:1]),
        chain_pem=certificates / f"{stem}.issuer.crt",
        key_pem=certificates / f"{stem}.key",
        root_pem=server.root_pem,
        names=names,
        key_type=KEY_TYPE,
    )


def test_lego_http01(challenge_server: ChallengeServer, tmp_path: Path) -> None:
    server = challenge_server
    before = server.validations("http-01")
    names = ("lego-http.example.test",)
    run_lego(server, tmp_path, names, ["--http", "--http.port", f"127.0.0.1:{server.http_port}"])
    assert server.validations("http-01") == before + len(names)


def test_lego_http01_two_names(challenge_server: ChallengeServer, tmp_path: Path) -> None:
    server = challenge_server
    before = server.validations("http-01")
    names = ("lego-a.example.test", "lego-b.example.test")
    run_lego(server, tmp_path, names, ["--http", "--http.port", f"127.0.0.1:{server.http_port}"])
    assert server.validations("http-01") == before + len(names)


def test_lego_tlsalpn01(challenge_server: ChallengeServer, tmp_path: Path) -> None:
    server = challenge_server
    before = server.validations("tls-alpn-01")
    names = ("lego-tls.example.test",)
    run_lego(server, tmp_path, names, ["--tls", "--tls.port", f"127.0.0.1:{server.tls_port}"])
    assert server.validations("tls-alpn-01") == before + len(names)


def test_lego_dns01_with_wildcard(
    challenge_server: ChallengeServer, tmp_path: Path, hook: Path
) -> None:
    server = challenge_server
    before = server.validations("dns-01")
    names = ("lego-dns.example.test", "*.lego-dns.example.test")
    solver = ["--dns", "exec", "--dns.disable-cp", "--dns.resolvers", server.dns.resolver]
    env = {
        "EXEC_PATH": str(hook),
        "EXEC_PROPAGATION_TIMEOUT": "20",
        "EXEC_POLLING_INTERVAL": "1",
        "EXEC_SEQUENCE_INTERVAL": "1",
        MANAGEMENT_URL_ENV: server.dns.management_url,
    }
    run_lego(server, tmp_path, names, solver, env)
    assert server.validations("dns-01") == before + len(names)


# -- certbot ---------------------------------------------------------------------------------


def check_certbot_result(server: ChallengeServer, workdir: Path, names: tuple[str, ...]) -> None:
    # certbot names the lineage after the first domain, without a "*." prefix.
    live = workdir / "config" / "live" / names[0].removeprefix("*.")
    assert_issued(
        leaf_pem=live / "cert.pem",
        chain_pem=live / "chain.pem",
        key_pem=live / "privkey.pem",
        root_pem=server.root_pem,
        names=names,
        key_type=KEY_TYPE,
    )


def test_certbot_standalone_http01(challenge_server: ChallengeServer, tmp_path: Path) -> None:
    server = challenge_server
    before = server.validations("http-01")
    workdir = tmp_path / "certbot"
    names = ("certbot-http.example.test",)
    cmd = certbot_certonly_command(
        certbot=certbot_executable(),
        directory_url=server.directory_url,
        workdir=workdir,
        names=names,
        key_type=KEY_TYPE,
        http01_port=server.http_port,
    )
    run_client(
        cmd,
        certbot_env(server.root_pem),
        cwd=tmp_path,
        extra_diagnostics=lambda: f"{certbot_log_tail(workdir)}\n{server.diagnostics()}",
    )
    check_certbot_result(server, workdir, names)
    assert server.validations("http-01") == before + len(names)


def certbot_manual_dns_command(
    server: ChallengeServer, workdir: Path, names: Sequence[str], hook: Path, key_type: KeyType
) -> list[str]:
    quoted = shlex.quote(str(hook))
    cmd = [
        certbot_executable(),
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--server",
        server.directory_url,
        "--config-dir",
        str(workdir / "config"),
        "--work-dir",
        str(workdir / "work"),
        "--logs-dir",
        str(workdir / "logs"),
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        f"{quoted} present",
        "--manual-cleanup-hook",
        f"{quoted} cleanup",
        *key_type.certbot_args,
    ]
    for name in names:
        cmd += ["-d", name]
    return cmd


def test_certbot_manual_dns01_with_wildcard(
    challenge_server: ChallengeServer, tmp_path: Path, hook: Path
) -> None:
    server = challenge_server
    before = server.validations("dns-01")
    workdir = tmp_path / "certbot"
    names = ("certbot-dns.example.test", "*.certbot-dns.example.test")
    env = certbot_env(server.root_pem) | {MANAGEMENT_URL_ENV: server.dns.management_url}
    run_client(
        certbot_manual_dns_command(server, workdir, names, hook, KEY_TYPE),
        env,
        cwd=tmp_path,
        extra_diagnostics=lambda: f"{certbot_log_tail(workdir)}\n{server.diagnostics()}",
    )
    check_certbot_result(server, workdir, names)
    assert server.validations("dns-01") == before + len(names)
