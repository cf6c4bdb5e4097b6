"""lego (Debian ``lego``): its own http-01 and tls-alpn-01 listeners, dns-01 by ``exec``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import lego_env
from tests.support.ports import free_port

from interop.clients.base import debian_version, expect_new_serial, leaf_of
from interop.lab import Lab
from interop.model import Mode, Session, StepError

EMAIL = "interop@example.test"


class Lego:
    name = "lego"
    source = "Debian `lego`"
    trust = "`LEGO_CA_CERTIFICATES=root.pem`"
    notes: tuple[str, ...] = (
        "lego registers only within `run`: the register cell checks the account that run created.",
    )
    install_hint = "apt-get install lego"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        return debian_version("lego")

    def run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "lego" / mode.short
        path = workdir / "state"
        env = (
            lego_env(lab.root_pem)
            | lab.hook_env()
            | {
                "EXEC_PATH": str(lab.hook),
                "EXEC_PROPAGATION_TIMEOUT": "20",
                "EXEC_POLLING_INTERVAL": "1",
                "EXEC_SEQUENCE_INTERVAL": "1",
            }
        )
        http_port = lab.http_port if mode is Mode.CHALLENGE else free_port()
        http = ["--http", "--http.port", f"127.0.0.1:{http_port}"]
        tls = ["--tls", "--tls.port", f"127.0.0.1:{lab.tls_port}"]
        dns = ["--dns", "exec", "--dns.disable-cp", "--dns.resolvers", lab.challtestsrv.resolver]

        def lego(
            label: str,
            names: Sequence[str],
            key_type: KeyType,
            solver: Sequence[str],
            *command: str,
        ) -> None:
            cmd = [
                "lego",
                "--server",
                lab.directory_url(mode),
                "--email",
                EMAIL,
                "--accept-tos",
                "--path",
                str(path),
                "--key-type",
                key_type.lego_key_type,
                *solver,
            ]
            for name in names:
                cmd += ["-d", name]
            lab.run(f"lego-{mode.short}-{label}", [*cmd, *command], env, workdir)

        def files(names: Sequence[str]) -> tuple[Path, Path]:
            stem = names[0].replace("*", "_")
            return path / "certificates" / f"{stem}.crt", path / "certificates" / f"{stem}.key"

        def issue(
            scenario: str, names: Sequence[str], key_type: KeyType, solver: Sequence[str], kind: str
        ) -> None:
            before = lab.validations(kind)
            lego(scenario, names, key_type, solver, "run")
            bundle, key = files(names)
            lab.check_bundle(bundle, key, names, key_type)
            if mode is Mode.CHALLENGE:
                lab.expect_validated(kind, before, len(names))

        single = lab.names(self.name, "single", mode)
        first: list[Exception] = []

        def register() -> None:
            # lego registers only as the first step of `run`: this cell checks the
            # account, the next one the certificate of the same run.
            before = lab.audit_count("acme_account_created")
            try:
                issue("single", single, ECDSA_P256, http, "http-01")
            except Exception as exc:
                first.append(exc)
            lab.expect_audit("acme_account_created", before, "account creation")
            if not list(path.glob(f"accounts/*/{EMAIL}/account.json")):
                raise StepError("lego wrote no account.json")

        def single_cell() -> None:
            if first:
                raise first[0]

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            issue("wildcard", (base, f"*.{base}"), ECDSA_P256, dns, "dns-01")

        def renew() -> None:
            old = leaf_of(files(single)[0])
            lego("renew", single, ECDSA_P256, http, "renew", "--days", "3650", "--no-random-sleep")
            lab.check_bundle(*files(single), single, ECDSA_P256)
            expect_new_serial(old, leaf_of(files(single)[0]))

        def revoke() -> None:
            leaf = leaf_of(files(single)[0])
            lego("revoke", single, ECDSA_P256, http, "revoke", "--reason", "4")
            lab.expect_revoked(leaf)

        s.run("register", register)
        s.run("single", single_cell)
        s.run(
            "multi",
            lambda: issue(
                "multi", lab.names(self.name, "multi", mode, 2), ECDSA_P256, http, "http-01"
            ),
            needs="register",
        )
        s.run("wildcard", wildcard, needs="register")
        if mode is Mode.CHALLENGE:
            s.run(
                "tls-alpn",
                lambda: issue(
                    "tls-alpn",
                    lab.names(self.name, "tls-alpn", mode),
                    ECDSA_P256,
                    tls,
                    "tls-alpn-01",
                ),
                needs="register",
            )
        s.run(
            "ecdsa",
            lambda: issue(
                "ecdsa", lab.names(self.name, "ecdsa", mode), ECDSA_P256, http, "http-01"
            ),
            needs="register",
        )
        s.run(
            "rsa",
            lambda: issue("rsa", lab.names(self.name, "rsa", mode), RSA_2048, http, "http-01"),
            needs="register",
        )
        s.run("renew", renew, needs="single")
        s.run("revoke", revoke, needs="single")
        s.unsupported("rollover", "lego's command line has no account key change")
        s.unsupported("deactivate", "lego's command line has no account deactivation")
