"""acme-tiny (Debian ``acme-tiny``): signs a CSR, proving names with http-01 files only.

It registers (or finds) its account on every run, writes the challenge files into
``--acme-dir`` (served by the harness's responder) and prints the certificate chain.
It runs on the system Python, whose ``urllib`` reads the root from ``SSL_CERT_FILE``.
Its account key must be RSA; the certificate key is whatever the CSR holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from tests.support.certs import ECDSA_P256, RSA_2048, KeyType
from tests.support.clients import client_env

from interop.clients.acmelib import key_pem, private_key
from interop.clients.base import debian_version, expect_new_serial, leaf_of
from interop.hooks import ACME_CHALLENGE_PATH
from interop.lab import Lab
from interop.model import Mode, Session


def write_csr(directory: Path, stem: str, names: Sequence[str], key_type: KeyType) -> Path:
    """A key and a CSR for ``names`` (CN the first, SAN all), as an operator would make."""
    key = private_key(key_type)
    (directory / f"{stem}.key").write_bytes(key_pem(key))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{stem}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


class AcmeTiny:
    name = "acme-tiny"
    source = "Debian `acme-tiny`"
    trust = "`SSL_CERT_FILE=root.pem` (Python's default context)"
    notes: tuple[str, ...] = (
        "its own pre-check fetches the challenge on port 80, so it runs with `--disable-check`.",
    )
    install_hint = "apt-get install acme-tiny"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        return debian_version("acme-tiny")

    def run(self, lab: Lab, s: Session) -> None:
        with lab.responder_for(s.mode):
            self._run(lab, s)

    def _run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / "acme-tiny" / mode.short
        workdir.mkdir(parents=True, exist_ok=True)
        account = workdir / "account.key"
        account.write_bytes(key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        acme_dir = lab.webroot.joinpath(*ACME_CHALLENGE_PATH)
        acme_dir.mkdir(parents=True, exist_ok=True)
        env = client_env({"SSL_CERT_FILE": str(lab.root_pem)})

        def sign(label: str, csr: Path) -> Path:
            ran = lab.run(
                f"acme-tiny-{mode.short}-{label}",
                [
                    "acme-tiny",
                    "--account-key",
                    str(account),
                    "--csr",
                    str(csr),
                    "--acme-dir",
                    str(acme_dir),
                    "--directory-url",
                    lab.directory_url(mode),
                    "--contact",
                    "mailto:interop@example.test",
                    # its own pre-check fetches http://<name>/ on port 80, not the lab's port
                    "--disable-check",
                ],
                env,
                workdir,
            )
            out = workdir / f"{label}.chain.pem"
            out.write_text(ran.stdout)
            return out

        def issue(scenario: str, names: Sequence[str], key_type: KeyType = ECDSA_P256) -> None:
            before = lab.validations("http-01")
            csr = write_csr(workdir, scenario, names, key_type)
            bundle = sign(scenario, csr)
            lab.check_bundle(bundle, workdir / f"{scenario}.key", names, key_type)
            if mode is Mode.CHALLENGE:
                lab.expect_validated("http-01", before, len(names))

        single = lab.names(self.name, "single", mode)
        first: list[Exception] = []

        def register() -> None:
            # acme-tiny registers as the first step of every run.
            before = lab.audit_count("acme_account_created")
            try:
                issue("single", single)
            except Exception as exc:
                first.append(exc)
            lab.expect_audit("acme_account_created", before, "account creation")

        def single_cell() -> None:
            if first:
                raise first[0]

        def renew() -> None:
            # Renewing with acme-tiny is running it again on the same CSR.
            old = leaf_of(workdir / "single.chain.pem")
            bundle = sign("renew", workdir / "single.csr")
            lab.check_bundle(bundle, workdir / "single.key", single, ECDSA_P256)
            expect_new_serial(old, leaf_of(bundle))

        s.run("register", register)
        s.run("single", single_cell)
        s.run(
            "multi",
            lambda: issue("multi", lab.names(self.name, "multi", mode, 2)),
            needs="register",
        )
        if mode is Mode.TRUST:  # no proof asked, so a wildcard CSR goes through
            base = lab.names(self.name, "wildcard", mode)[0]
            s.run("wildcard", lambda: issue("wildcard", (base, f"*.{base}")), needs="register")
        else:
            s.unsupported("wildcard", "http-01 only, so no wildcard (dns-01)")
            s.unsupported("tls-alpn", "http-01 only")
        s.run(
            "ecdsa", lambda: issue("ecdsa", lab.names(self.name, "ecdsa", mode)), needs="register"
        )
        s.run(
            "rsa",
            lambda: issue("rsa", lab.names(self.name, "rsa", mode), RSA_2048),
            needs="register",
        )
        s.run("renew", renew, needs="single")
        s.unsupported("revoke", "no revocation")
        s.unsupported("rollover", "no account key change")
        s.unsupported("deactivate", "no account deactivation")
