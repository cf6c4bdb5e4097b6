"""A throwaway PKI for the revocation tests, and the openssl / pkilint runners they use."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certctl.ca import (
    Issuer,
    IssueRequest,
    KeyType,
    LocalCA,
    PrivateKey,
    generate_key,
    load_or_create_ca,
)
from certctl.domain.serials import new_serial
from tests.support.gating import require_executable, require_or_skip

_BAD_SEVERITIES = frozenset({"ERROR", "FATAL"})


class MemoryKeyBackend:
    """The CA's key-backend seam, in memory, so the test holds the issuer's key."""

    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}

    def load_or_create(self, name: str, key_type: KeyType | str) -> PrivateKey:
        if name not in self.keys:
            self.keys[name] = generate_key(key_type)
        return self.keys[name]

    def load(self, name: str) -> PrivateKey:
        return self.keys[name]


def real_now() -> datetime:
    """Real time: openssl checks validity against its own clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Pki:
    """A root, one issuing CA with its key, and PEM files for openssl."""

    ca: LocalCA
    issuer: Issuer
    issuer_key: PrivateKey
    directory: Path

    @property
    def issuer_cert(self) -> x509.Certificate:
        return self.issuer.certificate

    @property
    def issuer_pem(self) -> Path:
        return self.directory / "issuer.pem"

    @property
    def chain_pem(self) -> Path:
        """Root and issuing CA: the trust anchors for ``-CAfile``."""
        return self.directory / "chain.pem"

    def leaf_with_crl_distribution_point(self, url: str) -> x509.Certificate:
        """A leaf whose CRLDP names ``url``: the CA's template does not add one (yet)."""
        leaf = self.issue_leaf()
        builder = (
            x509.CertificateBuilder()
            .subject_name(leaf.subject)
            .issuer_name(leaf.issuer)
            .public_key(leaf.public_key())
            .serial_number(new_serial())
            .not_valid_before(leaf.not_valid_before_utc)
            .not_valid_after(leaf.not_valid_after_utc)
        )
        for extension in leaf.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        return builder.sign(self.issuer_key, hashes.SHA256())

    def issue_leaf(self, name: str = "leaf.example.com") -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        now = real_now().replace(microsecond=0)
        request = IssueRequest(
            csr=csr,
            dns_names=(name,),
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=30),
            serial=new_serial(),
        )
        return self.issuer.issue(request).certificate


def make_pki(directory: Path, key_type: KeyType | str = KeyType.ECDSA_P256) -> Pki:
    backend = MemoryKeyBackend()
    ca = load_or_create_ca(directory, key_type=key_type, clock=real_now, key_backend=backend)
    issuer = ca.default_issuer
    wanted = spki(issuer.certificate.public_key())
    key = next(k for k in backend.keys.values() if spki(k.public_key()) == wanted)
    pki = Pki(ca, issuer, key, directory)
    pki.issuer_pem.write_text(issuer.cert_pem)
    pki.chain_pem.write_text(ca.root_pem + issuer.cert_pem)
    return pki


def spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issuer_public_key(pki: Pki) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    key = pki.issuer_cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def openssl(*args: str | Path) -> str:
    """Run openssl; return stdout and stderr together, failing the test on a non-zero exit."""
    returncode, output = openssl_result(*args)
    assert returncode == 0, output
    return output


def openssl_result(*args: str | Path) -> tuple[int, str]:
    """Run openssl; its exit code, and stdout and stderr together."""
    binary = require_executable("openssl", "apt-get install openssl")
    result = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout + result.stderr


def pkilint(tool: str, *args: str | Path) -> list[tuple[str, str]]:
    """(severity, code) of every ERROR or FATAL finding of a pkilint command-line linter."""
    binary = Path(sys.executable).with_name(tool)
    require_or_skip(binary.exists(), f"{tool} not found (pip install -r requirements-dev.lock)")
    result = subprocess.run(
        [str(binary), "lint", "-f", "JSON", "-s", "ERROR", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    return [
        (finding["severity"], finding["code"])
        for item in report["results"]
        for finding in item["finding_descriptions"]
        if finding["severity"] in _BAD_SEVERITIES
    ]
