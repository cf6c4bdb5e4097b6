"""uacme (Debian ``uacme``): a C client whose hook program answers the challenges.

uacme has no option for a CA bundle: it talks through libcurl with the system trust
store, /etc/ssl/certs/ca-certificates.crt (what an operator extends with
``update-ca-certificates``). Rather than change this machine's store, every uacme call
runs in a private mount namespace (``unshare --mount``, which needs root or user
namespaces) where that file is a copy of the system bundle plus ``certctl ca root``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import client_env

from interop.clients.base import debian_version, expect_new_serial, leaf_of
from interop.lab import Lab
from interop.model import Mode, Session, StepError

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Bind the bundle given as $1 over the system one, then run the rest of the arguments.
WITH_BUNDLE = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'


def private_trust_available() -> str | None:
    """None when ``unshare --mount`` with a bind mount works here, else why not."""
    if not SYSTEM_BUNDLE.is_file():
        return f"{SYSTEM_BUNDLE} missing (apt-get install ca-certificates)"
    try:
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "sh",
                "-c",
                WITH_BUNDLE,
                "sh",
                str(SYSTEM_BUNDLE),
                str(SYSTEM_BUNDLE),
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if result.returncode != 0:
        return f"unshare --mount not permitted: {result.stderr.strip()[:100]}"
    return None


class Uacme:
    name = "uacme"
    source = "Debian `uacme`"
    trust = (
        "the system bundle plus the root, bound over `/etc/ssl/certs/ca-certificates.crt` "
        "in a private mount namespace (uacme has no CA option)"
    )
    notes: tuple[str, ...] = (
        "uacme (GnuTLS) writes an EC private key with a 33-byte private value when its top "
        "bit is set (RFC 5915 asks for exactly 32); OpenSSL reads it, Python's cryptography "
        "does not, so the harness compares such keys in OpenSSL's re-encoding.",
        "uacme asks the OCSP responder about an existing certificate before renewing it.",
    )
    install_hint = "apt-get install uacme"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        return debian_version("uacme")

    def run(self, lab: Lab, s: Session) -> None:
        why_not = private_trust_available()
        if why_not is not None:
            for scenario in (
                "register",
                "single",
                "multi",
                "wildcard",
                "tls-alpn",
                "ecdsa",
                "rsa",
                "renew",
                "revoke",
                "rollover",
                "deactivate",
            ):
                if scenario != "tls-alpn" or s.mode is Mode.CHALLENGE:
                    s.not_run(scenario, f"cannot give uacme the root: {why_not}")
            return
        with lab.responder_for(s.mode):
            self._run(lab, s)

    def _run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "uacme" / mode.short
        confdir = workdir / "conf"
        workdir.mkdir(parents=True, exist_ok=True)
        bundle = workdir / "ca-bundle.crt"
        bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + b"\n" + lab.root_pem.read_bytes())

        def uacme(
            label: str,
            *args: str,
            accept: str = "http-01",
            key_type: KeyType = ECDSA_P256,
            ok_codes: tuple[int, ...] = (0,),
        ) -> None:
            key_args = (
                ["-t", "EC", "-b", "256"] if key_type is ECDSA_P256 else ["-t", "RSA", "-b", "2048"]
            )
            cmd = [
                "unshare", "--mount", "sh", "-c", WITH_BUNDLE, "sh",
                str(bundle), str(SYSTEM_BUNDLE), "uacme", "-v", "-y",
                "-a", lab.directory_url(mode), "-c", str(confdir),
                "-h", str(lab.hook), *key_args, *args,
            ]  # fmt: skip
            env = client_env(lab.hook_env(accept=accept))
            lab.run(f"uacme-{mode.short}-{label}", cmd, env, workdir, ok_codes=ok_codes)

        def cert_of(names: Sequence[str]) -> tuple[Path, Path]:
            stem = names[0].removeprefix("*.")
            return confdir / stem / "cert.pem", confdir / "private" / stem / "key.pem"

        def issue(
            scenario: str,
            names: Sequence[str],
            key_type: KeyType = ECDSA_P256,
            accept: str = "http-01",
        ) -> None:
            before = lab.validations(accept)
            uacme(scenario, "issue", *names, accept=accept, key_type=key_type)
            cert, key = cert_of(names)
            lab.check_bundle(cert, key, names, key_type)
            if mode is Mode.CHALLENGE:
                lab.expect_validated(accept, before, len(names))

        def register() -> None:
            before = lab.audit_count("acme_account_created")
            uacme("new", "new", "interop@example.test")
            lab.expect_audit("acme_account_created", before, "account creation")

        single = lab.names(self.name, "single", mode)

        def renew() -> None:
            cert, key = cert_of(single)
            old = leaf_of(cert)
            uacme("renew", "-f", "issue", *single)
            lab.check_bundle(cert, key, single, ECDSA_P256)
            expect_new_serial(old, leaf_of(cert))

        def revoke() -> None:
            cert, _ = cert_of(single)
            leaf = leaf_of(cert)
            uacme("revoke", "-r", "4", "revoke", str(cert))
            lab.expect_revoked(leaf)

        def rollover() -> None:
            before = lab.audit_count("acme_account_key_rolled")
            old_key = (confdir / "private" / "key.pem").read_bytes()
            uacme("newkey", "newkey")
            lab.expect_audit("acme_account_key_rolled", before, "account key change")
            if (confdir / "private" / "key.pem").read_bytes() == old_key:
                raise StepError("uacme kept the old account key")
            # The new key must now be the account's: a signed request with it works.
            uacme("update", "update", "rolled@example.test")

        def deactivate() -> None:
            before = lab.audit_count("acme_account_deactivated")
            uacme("deactivate", "deactivate")
            lab.expect_audit("acme_account_deactivated", before, "account deactivation")

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            issue("wildcard", (base, f"*.{base}"), accept="dns-01")

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
                    "tls-alpn", lab.names(self.name, "tls-alpn", mode), accept="tls-alpn-01"
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
        s.run("rollover", rollover, needs="register")
        s.run("deactivate", deactivate, needs="register")
