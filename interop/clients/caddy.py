"""Caddy (Debian ``caddy``): obtains certificates for the sites it serves, on start.

Configured with the walkthrough's Caddyfile template (``interop.walkthroughs``): the
global ``acme_ca``/``acme_ca_root`` options point it at a profile. In challenge mode
Caddy's own HTTP and HTTPS ports are the server's validation ports, and a site-level
``tls { issuer acme { ... } }`` switches off one of its two challenge types so that
each cell proves what it names.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import client_env
from tests.support.ports import free_port

from interop.clients.base import debian_version
from interop.lab import Lab
from interop.model import Mode, Session, StepError, one_line
from interop.walkthroughs import caddyfile

OBTAIN_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 10.0
EMAIL = "interop@example.test"
CADDY_KEY_TYPES = {ECDSA_P256.id: "p256", RSA_2048.id: "rsa2048"}


def storage_file(storage: Path, name: str, suffix: str) -> Path | None:
    """Where Caddy keeps ``name``'s certificate (``.crt``) or key (``.key``)."""
    stem = name.replace("*", "wildcard_")
    found = sorted(storage.glob(f"certificates/*/{stem}/{stem}{suffix}"))
    return found[0] if found else None


def served_leaf(port: int, name: str, root_pem: Path, *, wait_s: float = 10.0) -> x509.Certificate:
    """Handshake with Caddy on ``port`` as ``name``; the chain must verify to the root.

    Caddy writes a new certificate to its storage a moment before its TLS handler has it:
    a handshake in between gets an ``internal_error`` alert, so that one is retried for
    up to ``wait_s``. A certificate that does not verify fails at once."""
    ctx = ssl.create_default_context(cafile=str(root_pem))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
                ctx.wrap_socket(sock, server_hostname=name) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
            break
        except ssl.SSLError as exc:
            if "ALERT_INTERNAL_ERROR" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    if der is None:
        raise StepError(f"Caddy presented no certificate for {name}")
    return x509.load_der_x509_certificate(der)


class CaddyProcess:
    """``caddy run`` on a Caddyfile, with HOME and XDG dirs inside its work dir."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "Caddyfile"
        self.log_path = workdir / "caddy.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config)
        self._proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return client_env(
            {
                "HOME": str(self.workdir / "home"),
                "XDG_CONFIG_HOME": str(self.workdir / "config"),
                "XDG_DATA_HOME": str(self.workdir / "data"),
            }
        )

    def start(self, executable: str = "caddy") -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [executable, "run", "--config", str(self.config_path), "--adapter", "caddyfile"],
                env=self.env(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    def error_line(self) -> str:
        """The last error Caddy logged (JSON lines), for a failed cell's reason."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines):
            if '"level":"error"' in line or "Error:" in line:
                return one_line(line)
        return one_line(lines[-1]) if lines else "no log"

    def wait_for(self, storage: Path, names: Sequence[str]) -> None:
        deadline = time.monotonic() + OBTAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(storage_file(storage, n, ".crt") for n in names):
                return
            if not self.alive():
                raise StepError(f"caddy exited: {self.error_line()}")
            time.sleep(0.3)
        raise StepError(
            f"no certificate after {OBTAIN_TIMEOUT_S:.0f}s; caddy said: {self.error_line()}"
        )


class Caddy:
    name = "caddy"
    source = "Debian `caddy`"
    trust = "`acme_ca_root root.pem` (global option)"
    notes: tuple[str, ...] = (
        "wildcard (trust mode) is a site `*.name` alone: Caddy puts one name in each certificate.",
        "every cell also checks that Caddy serves the certificate it obtained (a TLS "
        "handshake on its HTTPS port that verifies against the root).",
    )
    install_hint = "apt-get install caddy"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        return debian_version("caddy")

    def run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "caddy" / mode.short
        storage = workdir / "storage"

        def serve(
            scenario: str,
            names: Sequence[str],
            key_type: KeyType,
            disable: str | None = None,
        ) -> None:
            if mode is Mode.CHALLENGE:
                http_port, https_port = lab.http_port, lab.tls_port
            else:
                http_port, https_port = free_port(), free_port()
            config = caddyfile(
                directory_url=lab.directory_url(mode),
                root_pem=str(lab.root_pem),
                email=EMAIL,
                http_port=str(http_port),
                https_port=str(https_port),
                storage=str(storage),
                admin="off",
                site=", ".join(names),
            )
            config = config.replace(
                "\tadmin off\n", f"\tadmin off\n\tkey_type {CADDY_KEY_TYPES[key_type.id]}\n"
            )
            if disable is not None:
                issuer = (
                    "\ttls {\n\t\tissuer acme {\n"
                    f"\t\t\tdir {lab.directory_url(mode)}\n"
                    f"\t\t\ttrusted_roots {lab.root_pem}\n"
                    f"\t\t\temail {EMAIL}\n"
                    f"\t\t\t{disable}\n"
                    "\t\t}\n\t}\n"
                )
                config = config.replace("\trespond ", issuer + "\trespond ", 1)
            kind = {
                None: "http-01",
                "disable_tlsalpn_challenge": "http-01",
                "disable_http_challenge": "tls-alpn-01",
            }[disable]
            before = lab.validations(kind)
            caddy = CaddyProcess(workdir / scenario, config)
            caddy.start()
            try:
                caddy.wait_for(storage, names)
                for name in names:
                    leaf = served_leaf(https_port, name.replace("*", "www"), lab.root_pem)
                    crt, key = (
                        storage_file(storage, name, ".crt"),
                        storage_file(storage, name, ".key"),
                    )
                    assert crt is not None and key is not None
                    checked = lab.check_bundle(crt, key, [name], key_type)
                    if checked.serial_number != leaf.serial_number:
                        raise StepError(f"Caddy serves another certificate for {name}")
            finally:
                caddy.stop()
            if mode is Mode.CHALLENGE:
                lab.expect_validated(kind, before, len(names))

        http_only = "disable_tlsalpn_challenge" if mode is Mode.CHALLENGE else None
        first: list[Exception] = []

        def register() -> None:
            # Caddy registers as part of obtaining its first certificate.
            before = lab.audit_count("acme_account_created")
            try:
                serve("single", lab.names(self.name, "single", mode), ECDSA_P256, http_only)
            except Exception as exc:
                first.append(exc)
            lab.expect_audit("acme_account_created", before, "account creation")

        def single() -> None:
            if first:
                raise first[0]

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            serve("wildcard", [f"*.{base}"], ECDSA_P256, http_only)

        s.run("register", register)
        s.run("single", single)
        s.unsupported("multi", "Caddy obtains one certificate per site name, never one for several")
        if mode is Mode.TRUST:
            s.run("wildcard", wildcard, needs="register")
        else:
            s.unsupported("wildcard", "dns-01 needs a DNS provider module; Debian's caddy has none")
        if mode is Mode.CHALLENGE:
            s.run(
                "tls-alpn",
                lambda: serve(
                    "tls-alpn",
                    lab.names(self.name, "tls-alpn", mode),
                    ECDSA_P256,
                    "disable_http_challenge",
                ),
                needs="register",
            )
        s.run(
            "ecdsa",
            lambda: serve("ecdsa", lab.names(self.name, "ecdsa", mode), ECDSA_P256, http_only),
            needs="register",
        )
        s.run(
            "rsa",
            lambda: serve("rsa", lab.names(self.name, "rsa", mode), RSA_2048, http_only),
            needs="register",
        )
        s.unsupported(
            "renew",
            "renews by itself in the last third of the lifetime; no command forces it",
        )
        s.unsupported("revoke", "no revoke command")
        s.unsupported("rollover", "no account key change")
        s.unsupported("deactivate", "no account deactivation")
