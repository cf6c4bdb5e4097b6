"""dehydrated (Debian ``dehydrated``): a bash client over curl and openssl.

It writes http-01 files into ``WELLKNOWN`` and tls-alpn-01 certificates into
``ALPNCERTDIR`` (both served by the harness's responder, as a web server or an ALPN
proxy would), and calls its hook for dns-01. curl reads the root from
``CURL_CA_BUNDLE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import client_env

from interop.clients.base import debian_version, expect_new_serial, leaf_of
from interop.hooks import ACME_CHALLENGE_PATH
from interop.lab import Lab
from interop.model import Mode, Session

CONFIG = """\
CA="{ca}"
BASEDIR="{basedir}"
WELLKNOWN="{wellknown}"
ALPNCERTDIR="{alpn}"
HOOK="{hook}"
HOOK_CHAIN="no"
KEYSIZE="2048"
CONTACT_EMAIL="interop@example.test"
LOCKFILE="{basedir}/lock"
"""
ALGO = {ECDSA_P256.id: "prime256v1", RSA_2048.id: "rsa"}


class Dehydrated:
    name = "dehydrated"
    source = "Debian `dehydrated`"
    trust = "`CURL_CA_BUNDLE=root.pem`"
    notes: tuple[str, ...] = ()
    install_hint = "apt-get install dehydrated"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        return debian_version("dehydrated")

    def run(self, lab: Lab, s: Session) -> None:
        with lab.responder_for(s.mode):
            self._run(lab, s)

    def _run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "dehydrated" / mode.short
        basedir = workdir / "base"
        basedir.mkdir(parents=True, exist_ok=True)
        config = workdir / "config"
        config.write_text(
            CONFIG.format(
                ca=lab.directory_url(mode),
                basedir=basedir,
                wellknown=lab.webroot.joinpath(*ACME_CHALLENGE_PATH),
                alpn=lab.alpn_dir,
                hook=lab.hook,
            )
        )
        lab.webroot.joinpath(*ACME_CHALLENGE_PATH).mkdir(parents=True, exist_ok=True)
        lab.alpn_dir.mkdir(parents=True, exist_ok=True)

        def dehydrated(label: str, *args: str, challenge: str = "http-01") -> None:
            env = client_env(
                {"CURL_CA_BUNDLE": str(lab.root_pem)} | lab.hook_env(challenge=challenge)
            )
            cmd = ["dehydrated", "--config", str(config), *args]
            lab.run(f"dehydrated-{mode.short}-{label}", cmd, env, workdir)

        def files(names: Sequence[str]) -> tuple[Path, Path, Path]:
            d = basedir / "certs" / names[0]
            return d / "cert.pem", d / "chain.pem", d / "privkey.pem"

        def issue(
            scenario: str,
            names: Sequence[str],
            key_type: KeyType = ECDSA_P256,
            challenge: str = "http-01",
            *extra: str,
        ) -> None:
            before = lab.validations(challenge)
            domains = [arg for name in names for arg in ("-d", name)]
            dehydrated(
                scenario,
                "--cron",
                *domains,
                "--challenge",
                challenge,
                "--algo",
                ALGO[key_type.id],
                *extra,
                challenge=challenge,
            )
            cert, chain, key = files(names)
            lab.check_issued(
                leaf_pem=cert, chain_pem=chain, key_pem=key, names=names, key_type=key_type
            )
            if mode is Mode.CHALLENGE and not extra:
                lab.expect_validated(challenge, before, len(names))

        def register() -> None:
            before = lab.audit_count("acme_account_created")
            dehydrated("register", "--register", "--accept-terms")
            lab.expect_audit("acme_account_created", before, "account creation")

        single = lab.names(self.name, "single", mode)

        def renew() -> None:
            old = leaf_of(files(single)[0])
            issue("renew", single, ECDSA_P256, "http-01", "--force")
            expect_new_serial(old, leaf_of(files(single)[0]))

        def revoke() -> None:
            leaf = leaf_of(files(single)[0])
            dehydrated("revoke", "--revoke", str(files(single)[0].resolve()))
            lab.expect_revoked(leaf)

        def deactivate() -> None:
            before = lab.audit_count("acme_account_deactivated")
            dehydrated("deactivate", "--deactivate")
            lab.expect_audit("acme_account_deactivated", before, "account deactivation")

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            issue("wildcard", (base, f"*.{base}"), ECDSA_P256, "dns-01")

        s.run("register", register)
        s.run("single", lambda: issue("single", single), needs="register")
        s.run(
            "multi",
            lambda: issue("multi", lab.names(self.name, "multi", mode, 2)),
            needs="register",
        )
        s.run("wildcard", wildcard, needs="register")
        if mode is Mode.CHALLENGE:
            s.run(
                "tls-alpn",
                lambda: issue(
                    "tls-alpn", lab.names(self.name, "tls-alpn", mode), ECDSA_P256, "tls-alpn-01"
                ),
                needs="register",
            )
        s.run(
            "ecdsa", lambda: issue("ecdsa", lab.names(self.name, "ecdsa", mode)), needs="register"
        )
        s.run(
            "rsa",
            lambda: issue("rsa", lab.names(self.name, "rsa", mode), RSA_2048),
            needs="register",
        )
        s.run("renew", renew, needs="single")
        s.run("revoke", revoke, needs="single")
        s.unsupported("rollover", "dehydrated has no account key change")
        s.run("deactivate", deactivate, needs="register")
