"""certbot (PyPI, in the project's venv): standalone http-01, manual hooks for dns-01."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import certbot_certonly_command, certbot_env
from tests.support.ports import free_port

from interop.clients.base import expect_new_serial, leaf_of
from interop.lab import Lab
from interop.model import Mode, Session


class Certbot:
    name = "certbot"
    source = "PyPI `certbot` (dev dependency, in `.venv`)"
    trust = "`REQUESTS_CA_BUNDLE=root.pem`"
    notes: tuple[str, ...] = (
        "`certbot renew` sleeps up to 8 minutes when it has no terminal; "
        "`--no-random-sleep-on-renew` turns that off.",
    )
    install_hint = "make install (certbot is in requirements-dev.lock)"
    known_failures: dict[tuple[Mode, str], str] = {}

    def __init__(self) -> None:
        self.executable = str(Path(sys.executable).parent / "certbot")

    def version(self) -> str | None:
        if not Path(self.executable).exists():
            return None
        return version("certbot")

    def run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "certbot" / mode.short
        env = certbot_env(lab.root_pem) | lab.hook_env()
        http_port = lab.http_port if mode is Mode.CHALLENGE else free_port()
        common = [
            "--non-interactive",
            "--server",
            lab.directory_url(mode),
            "--config-dir",
            str(workdir / "config"),
            "--work-dir",
            str(workdir / "work"),
            "--logs-dir",
            str(workdir / "logs"),
        ]

        def certbot(label: str, *args: str) -> None:
            lab.run(f"certbot-{mode.short}-{label}", [self.executable, *args], env, workdir)

        def live(names: Sequence[str]) -> Path:
            return workdir / "config" / "live" / names[0].removeprefix("*.")

        def check(names: Sequence[str], key_type: KeyType) -> None:
            d = live(names)
            lab.check_issued(
                leaf_pem=d / "cert.pem",
                chain_pem=d / "chain.pem",
                key_pem=d / "privkey.pem",
                names=names,
                key_type=key_type,
            )

        def standalone(scenario: str, count: int, key_type: KeyType) -> None:
            names = lab.names(self.name, scenario, mode, count)
            before = lab.validations("http-01")
            cmd = certbot_certonly_command(
                certbot=self.executable,
                directory_url=lab.directory_url(mode),
                workdir=workdir,
                names=names,
                key_type=key_type,
                http01_port=http_port,
            )
            lab.run(f"certbot-{mode.short}-{scenario}", cmd, env, workdir)
            check(names, key_type)
            if mode is Mode.CHALLENGE:
                lab.expect_validated("http-01", before, count)

        def register() -> None:
            before = lab.audit_count("acme_account_created")
            certbot(
                "register", "register", "--agree-tos", "--register-unsafely-without-email", *common
            )
            lab.expect_audit("acme_account_created", before, "account creation")

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            names = (base, f"*.{base}")
            before = lab.validations("dns-01")
            hook = shlex.quote(str(lab.hook))
            certbot(
                "wildcard",
                "certonly",
                *common,
                "--manual",
                "--preferred-challenges",
                "dns",
                "--manual-auth-hook",
                f"{hook} present",
                "--manual-cleanup-hook",
                f"{hook} cleanup",
                *ECDSA_P256.certbot_args,
                "-d",
                names[0],
                "-d",
                names[1],
            )
            check(names, ECDSA_P256)
            if mode is Mode.CHALLENGE:
                lab.expect_validated("dns-01", before, 2)

        single = lab.names(self.name, "single", mode)

        def renew() -> None:
            old = leaf_of(live(single) / "cert.pem")
            certbot(
                "renew",
                "renew",
                *common,
                "--cert-name",
                single[0],
                "--force-renewal",
                "--no-random-sleep-on-renew",  # else certbot sleeps up to 8 min without a tty
            )
            check(single, ECDSA_P256)
            expect_new_serial(old, leaf_of(live(single) / "cert.pem"))

        def revoke() -> None:
            leaf = leaf_of(live(single) / "cert.pem")
            certbot(
                "revoke",
                "revoke",
                *common,
                "--cert-path",
                str(live(single) / "cert.pem"),
                "--reason",
                "superseded",
                "--no-delete-after-revoke",
            )
            lab.expect_revoked(leaf)

        def deactivate() -> None:
            before = lab.audit_count("acme_account_deactivated")
            certbot("unregister", "unregister", *common)
            lab.expect_audit("acme_account_deactivated", before, "account deactivation")

        s.run("register", register)
        s.run("single", lambda: standalone("single", 1, ECDSA_P256), needs="register")
        s.run("multi", lambda: standalone("multi", 2, ECDSA_P256), needs="register")
        s.run("wildcard", wildcard, needs="register")
        if mode is Mode.CHALLENGE:
            s.unsupported("tls-alpn", "no tls-alpn-01 authenticator in certbot")
        s.run("ecdsa", lambda: standalone("ecdsa", 1, ECDSA_P256), needs="register")
        s.run("rsa", lambda: standalone("rsa", 1, RSA_2048), needs="register")
        s.run("renew", renew, needs="single")
        s.run("revoke", revoke, needs="single")
        s.unsupported("rollover", "certbot has no account key change command")
        s.run("deactivate", deactivate, needs="register")
