"""The servers under test: certctl (SQLite or PostgreSQL) and Pebble, on free loopback ports."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .procstat import ProcInfo, postgres_cluster, tree

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# certctl's rate limits are turned off: all the load comes from one client address, with a
# few hundred accounts ordering thousands of certificates.
CERTCTL_ENV = {
    "CERTCTL_PKI_RATE_LIMIT_PER_SECOND": "0",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_ORDERS_PER_HOUR": "0",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_CONCURRENT_ORDERS": "0",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_KEY_CHANGE_PER_HOUR": "0",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_CHALLENGE_RESPONDS_PER_HOUR": "0",
    "CERTCTL_ACME_SERVER_RATE_LIMIT_NEW_ACCOUNTS_PER_IP_PER_HOUR": "0",
}
PEBBLE_ENV = {
    "PEBBLE_VA_ALWAYS_VALID": "1",
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_WFE_NONCEREJECT": "0",
}

Selector = Callable[[], list[ProcInfo]]


class TargetError(RuntimeError):
    """A target did not start."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Target:
    """A server process under test. ``start()``, then the attributes below, then ``stop()``."""

    key = ""
    label = ""
    kind = ""  # "certctl" or "pebble"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory_url = ""
        self.ca_pem = ""
        self.log_path = workdir / "server.log"

    # -- what subclasses provide --------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Files and databases the server needs before it starts."""

    def _after_ready(self) -> None:
        """Trust anchor and anything else to fetch once the server answers."""

    def _cleanup(self) -> None:
        """Drop what ``_prepare`` made outside the work dir."""

    def db_selector(self) -> Selector | None:
        return None

    def version(self) -> str:
        return ""

    # -- lifecycle -------------------------------------------------------------------

    def server_selector(self) -> Selector:
        assert self.proc is not None
        return tree([self.proc.pid])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._command(),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        try:
            self._wait_ready()
            self._after_ready()
            self._check_trust()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # The server runs in its own session: signal its process group (its workers).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._cleanup()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no attempt"
        with httpx.Client(verify=False, trust_env=False, timeout=5) as client:  # noqa: S501 -- probe only; the chain is verified after
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise TargetError(
                        f"{self.label} exited with {self.proc.returncode}\n"
                        f"{_log_tail(self.log_path)}"
                    )
                try:
                    if client.get(self.directory_url).status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.2)
        raise TargetError(f"{self.label} not ready: {last}\n{_log_tail(self.log_path)}")

    def _check_trust(self) -> None:
        ctx = ssl.create_default_context(cadata=self.ca_pem)
        with httpx.Client(verify=ctx, trust_env=False, timeout=5) as client:
            client.get(self.directory_url).raise_for_status()

    def log_tail(self) -> str:
        return _log_tail(self.log_path)


def _scrubbed_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTCTL_", "PEBBLE_"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    return env


class CertctlTarget(Target):
    kind = "certctl"

    def __init__(self, workdir: Path, workers: int, postgres_url: str | None) -> None:
        super().__init__(workdir)
        self.workers = workers
        self.postgres_url = postgres_url
        self.database = ""
        self.database_url: str | None = None
        backend = "PostgreSQL" if postgres_url else "SQLite"
        self.key = f"{'postgres' if postgres_url else 'sqlite'}-{workers}"
        self.label = f"certctl, {backend}, {workers} worker{'s' if workers > 1 else ''}"
        self.data_dir = workdir / "data"

    @staticmethod
    def executable() -> str:
        return str(Path(sys.executable).parent / "certctl")

    def _prepare(self) -> None:
        self.directory_url = f"https://{HOST}:{self.port}/acme/directory"
        if self.postgres_url:
            self.database, self.database_url = create_database(self.postgres_url, "certctl_bench")

    def _command(self) -> list[str]:
        return [
            self.executable(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"{HOST}:{self.port}",
            "--workers",
            str(self.workers),
        ]

    def _env(self) -> dict[str, str]:
        env = _scrubbed_env()
        env.update(CERTCTL_ENV)
        if self.database_url:
            env["CERTCTL_DATABASE_URL"] = self.database_url
        return env

    def _after_ready(self) -> None:
        env = self._env()
        result = subprocess.run(
            [self.executable(), "ca", "root", "--data-dir", str(self.data_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0 or "BEGIN CERTIFICATE" not in result.stdout:
            raise TargetError(f"certctl ca root failed: {result.stderr[-2000:]}")
        self.ca_pem = result.stdout

    def _cleanup(self) -> None:
        if self.postgres_url and self.database:
            drop_database(self.postgres_url, self.database)
            self.database = ""

    def db_selector(self) -> Selector | None:
        if not self.database:
            return None
        return postgres_cluster(self.database, pwd.getpwnam("postgres").pw_uid)

    def version(self) -> str:
        return git_head()


class PebbleTarget(Target):
    kind = "pebble"
    key = "pebble"
    label = "Pebble"

    def _prepare(self) -> None:
        self.directory_url = f"https://{HOST}:{self.port}/dir"
        ca_pem, cert_pem, key_pem = _tls_material()
        self.ca_pem = ca_pem
        (self.workdir / "cert.pem").write_bytes(cert_pem)
        (self.workdir / "key.pem").write_bytes(key_pem)
        config = {
            "pebble": {
                "listenAddress": f"{HOST}:{self.port}",
                "managementListenAddress": f"{HOST}:{free_port()}",
                "certificate": str(self.workdir / "cert.pem"),
                "privateKey": str(self.workdir / "key.pem"),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.workdir / "pebble-config.json").write_text(json.dumps(config, indent=2))

    def _command(self) -> list[str]:
        exe = shutil.which("pebble")
        if exe is None:
            raise TargetError("pebble not found (apt-get install pebble)")
        return [exe, "-config", str(self.workdir / "pebble-config.json")]

    def _env(self) -> dict[str, str]:
        env = _scrubbed_env()
        env.update(PEBBLE_ENV)
        return env

    def version(self) -> str:
        return _dpkg_version("pebble")


def _tls_material() -> tuple[str, bytes, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key) PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem).decode(), cert.public_bytes(pem), key_pem


# -- PostgreSQL ------------------------------------------------------------------------


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def _pg_admin(url: str) -> Any:
    import psycopg  # noqa: PLC0415 -- only the PostgreSQL configuration needs it

    with psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=5) as conn:
        yield conn


def create_database(url: str, prefix: str) -> tuple[str, str]:
    """A new, empty database on ``url``'s server for one run: its name and its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _pg_admin(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, _with_database(url, name)


def drop_database(url: str, name: str) -> None:
    with _pg_admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available(url: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        with _pg_admin(url) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def postgres_version(url: str) -> str:
    try:
        with _pg_admin(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except Exception:
        return "unknown"
    return str(row[0]) if row else "unknown"


# -- versions --------------------------------------------------------------------------


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    head = out.stdout.strip() or "unknown"
    return f"{head} (with uncommitted changes under src/)" if dirty.stdout.strip() else head


def dpkg_version(package: str) -> str:
    return _dpkg_version(package)
