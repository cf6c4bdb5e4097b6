"""The served certctl every client of the matrix talks to, and what surrounds it.

One ``certctl serve`` (embedded SQLite) on a free loopback port with two profiles:

- ``interop-trust`` in ``trust_authenticated`` mode, and
- ``interop-chal`` in ``challenge`` mode, validating on loopback: names resolve through
  pebble-challtestsrv (every A query answers 127.0.0.1; dns-01 TXT records are set
  through its management API), http-01 and tls-alpn-01 connect to two validation ports
  fixed for the server's lifetime, which each client (or :mod:`interop.responder` for
  the webroot-style clients) binds in turn. So the challenge-mode sessions run one
  after another.

The server-side checks read the audit log of the server's SQLite database (read-only):
every account creation, key change, deactivation and revocation writes a row there.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from tests.support.certs import (
    KeyType,
    assert_issued,
    load_chain,
    load_private_key,
    write_pem,
)
from tests.support.challtestsrv import ChallTestSrv
from tests.support.ports import free_port
from tests.support.server import ServedCertctl, run_certctl

from interop.hooks import (
    ACCEPT_ENV,
    ALPN_ENV,
    CHALLENGE_ENV,
    DNS_ENV,
    WEBROOT_ENV,
    write_hook_script,
)
from interop.model import Mode, StepError, one_line
from interop.responder import Responder

PROFILES = {Mode.TRUST: "interop-trust", Mode.CHALLENGE: "interop-chal"}
DOMAIN = "interop.test"
CLIENT_TIMEOUT_S = 60.0


class LabError(RuntimeError):
    """The lab (server, DNS) could not be set up: nothing can run."""


@dataclass(frozen=True)
class Ran:
    stdout: str
    stderr: str


class Lab:
    """Server, DNS, validation ports, responder and checks, shared by all sessions."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.http_port = 0
        self.tls_port = 0
        self.dns: ChallTestSrv | None = None
        self.served: ServedCertctl | None = None
        self.hook = workdir / "hook"
        self.webroot = workdir / "webroot"
        self.alpn_dir = workdir / "alpn"
        self._log_seq = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        executable = shutil.which("pebble-challtestsrv")
        if executable is None:
            raise LabError("pebble-challtestsrv not found (apt-get install pebble)")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.dns = ChallTestSrv(self.workdir / "dns", executable)
        self.dns.start()
        self.http_port, self.tls_port = free_port(), free_port()
        env = {
            "CERTCTL_ACME_SERVER_DNS01_RESOLVER": self.dns.resolver,
            "CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK": "true",
            "CERTCTL_ACME_SERVER_VALIDATION_HTTP_PORT": str(self.http_port),
            "CERTCTL_ACME_SERVER_VALIDATION_TLS_PORT": str(self.tls_port),
            "CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT": "10s",
            "CERTCTL_ACME_SERVER_RETRY_AFTER": "1s",
        }
        self.served = ServedCertctl(self.workdir / "certctl", None, env=env)
        self.served.start()
        for mode, profile in PROFILES.items():
            created = run_certctl(
                [
                    "profile",
                    "create",
                    profile,
                    "--acme-auth-mode",
                    mode.value,
                    "--data-dir",
                    str(self.served.data_dir),
                ],
                None,
            )
            if created.returncode != 0:
                raise LabError(f"certctl profile create {profile}: {one_line(created.stderr)}")
        write_hook_script(self.hook)
        # A running server picks up a new profile within about a second.
        time.sleep(1.5)

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()
        if self.dns is not None:
            self.dns.stop()

    # -- addresses ----------------------------------------------------------------------

    @property
    def server(self) -> ServedCertctl:
        assert self.served is not None, "lab not started"
        return self.served

    @property
    def challtestsrv(self) -> ChallTestSrv:
        assert self.dns is not None, "lab not started"
        return self.dns

    @property
    def root_pem(self) -> Path:
        return self.server.root_pem_path

    def directory_url(self, mode: Mode) -> str:
        return f"{self.server.base_url}/acme/profile/{PROFILES[mode]}/directory"

    @staticmethod
    def names(client: str, scenario: str, mode: Mode, count: int = 1) -> tuple[str, ...]:
        """Fresh names for one cell, e.g. ``lego-single.chal.interop.test``."""
        base = f"{client}-{scenario}.{mode.short}.{DOMAIN}"
        if count == 1:
            return (base,)
        return (base, *(f"alt{i}.{base}" for i in range(1, count)))

    def hook_env(self, *, accept: str = "http-01", challenge: str = "") -> dict[str, str]:
        """What :mod:`interop.hooks` needs to reach DNS, the webroot and the ALPN dir."""
        return {
            DNS_ENV: self.challtestsrv.management_url,
            WEBROOT_ENV: str(self.webroot),
            ALPN_ENV: str(self.alpn_dir),
            ACCEPT_ENV: accept,
            CHALLENGE_ENV: challenge,
        }

    def responder(self) -> Responder:
        """Webroot HTTP and TLS-ALPN responders on the validation ports."""
        return Responder(self.webroot, self.alpn_dir, self.http_port, self.tls_port)

    def responder_for(self, mode: Mode) -> contextlib.AbstractContextManager[object]:
        """The responders while a client runs in challenge mode; nothing otherwise (the
        trust-authenticated profile validates nothing)."""
        return self.responder() if mode is Mode.CHALLENGE else contextlib.nullcontext()

    # -- running clients ----------------------------------------------------------------

    def run(
        self,
        label: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        timeout: float = CLIENT_TIMEOUT_S,
        ok_codes: tuple[int, ...] = (0,),
    ) -> Ran:
        """Run a client command; its output goes to ``logs/``. A non-zero exit (or a
        time-out) raises :class:`StepError` with the client's last telling line."""
        self._log_seq += 1
        log = self.logs / f"{self._log_seq:03d}-{label}.log"
        cwd.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                list(cmd),
                env=dict(env),
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            log.write_text(f"$ {' '.join(cmd)}\ntimed out after {timeout:.0f}s\n{exc}\n")
            raise StepError(f"{Path(cmd[0]).name} timed out after {timeout:.0f}s") from None
        log.write_text(
            f"$ {' '.join(cmd)}\nexit {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
        )
        if result.returncode not in ok_codes:
            raise StepError(
                f"{Path(cmd[0]).name} exited {result.returncode}: "
                f"{telling_line(result.stderr + chr(10) + result.stdout)}"
            )
        return Ran(result.stdout, result.stderr)

    # -- checks -------------------------------------------------------------------------

    def audit(self, action: str) -> list[dict[str, object]]:
        """The details of every audit event with ``action``, oldest first."""
        db = self.server.data_dir / "certctl.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT details FROM audit_events WHERE action = ? ORDER BY at", (action,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def audit_count(self, action: str) -> int:
        return len(self.audit(action))

    def expect_audit(self, action: str, before: int, what: str) -> None:
        after = self.audit_count(action)
        if after <= before:
            raise StepError(f"the server recorded no {what} ({action})")

    def expect_revoked(self, leaf: x509.Certificate) -> None:
        serial = format(leaf.serial_number, "x")
        if not any(d.get("serial") == serial for d in self.audit("certificate_revoked")):
            raise StepError(f"the server has no revocation of serial {serial}")

    def validations(self, kind: str) -> int:
        """Successful validations of challenge type ``kind`` recorded so far."""
        return sum(
            1
            for d in self.audit("acme_challenge_completed")
            if d.get("type") == kind and d.get("valid") is True
        )

    def expect_validated(self, kind: str, before: int, count: int) -> None:
        done = self.validations(kind) - before
        if done < count:
            raise StepError(f"server validated {done} {kind} challenge(s), expected {count}")

    def check_issued(
        self,
        *,
        leaf_pem: Path,
        chain_pem: Path,
        key_pem: Path,
        names: Sequence[str],
        key_type: KeyType,
    ) -> x509.Certificate:
        """The shared certificate checks (names, key type, key match, openssl verify
        against ``certctl ca root``)."""
        try:
            load_private_key(key_pem)
        except ValueError:
            # GnuTLS (uacme) pads an EC private value with a 0x00 when its top bit is set:
            # 33 bytes where RFC 5915 asks for exactly 32. OpenSSL reads it; cryptography
            # does not, so compare the key in OpenSSL's re-encoding.
            key_pem = self._reencoded(key_pem)
        return assert_issued(
            leaf_pem=leaf_pem,
            chain_pem=chain_pem,
            key_pem=key_pem,
            root_pem=self.root_pem,
            names=tuple(names),
            key_type=key_type,
        )

    def _reencoded(self, key_pem: Path) -> Path:
        out = key_pem.with_name(key_pem.name + ".openssl.pem")
        result = subprocess.run(
            ["openssl", "pkey", "-in", str(key_pem), "-out", str(out)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise StepError(f"{key_pem.name} is no private key OpenSSL reads either")
        return out

    def check_bundle(
        self, bundle_pem: Path, key_pem: Path, names: Sequence[str], key_type: KeyType
    ) -> x509.Certificate:
        """Checks for a client that writes leaf and chain in one file."""
        certs = load_chain(bundle_pem)
        if len(certs) < 2:
            raise StepError(f"{bundle_pem.name} holds {len(certs)} certificate(s), no chain")
        directory = bundle_pem.parent
        leaf = write_pem(directory / f"{bundle_pem.stem}.leaf-only.pem", certs[:1])
        chain = write_pem(directory / f"{bundle_pem.stem}.chain-only.pem", certs[1:])
        return self.check_issued(
            leaf_pem=leaf, chain_pem=chain, key_pem=key_pem, names=names, key_type=key_type
        )


def telling_line(output: str) -> str:
    """The last line of a client's output that looks like an error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if any(word in lowered for word in ("error", "fail", "invalid", "unable", "refus")):
            return one_line(line)
    return one_line(lines[-1]) if lines else "(no output)"
