"""Builders shared by the CA tests: CSRs, issue requests, a clock, a bootstrap worker."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from certctl.ca import IssueRequest, load_or_create_ca
from certctl.domain.serials import new_serial

# Real time, truncated to the second: openssl verify checks validity against its own clock.
NOW = datetime.now(UTC).replace(microsecond=0)

CsrKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
CsrKeyAny = CsrKey | ed448.Ed448PrivateKey


def fixed_clock() -> datetime:
    return NOW


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: CsrKeyAny, names: tuple[str, ...] = ()) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    algorithm = (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else (hashes.SHA256())
    )
    return builder.sign(key, algorithm)


def make_request(csr: x509.CertificateSigningRequest | None = None, **changes: Any) -> IssueRequest:
    """A valid 90-day request for two DNS names, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "csr": csr if csr is not None else make_csr(ec_key()),
        "dns_names": ("example.com", "www.example.com"),
        "not_before": NOW - timedelta(minutes=1),
        "not_after": NOW + timedelta(days=90),
        "serial": new_serial(),
    }
    return IssueRequest(**(fields | changes))


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def bootstrap_worker(data_dir: str, barrier: Barrier, results: Any) -> None:
    """Run in a child process: start at the same moment as the others, report what we got."""
    barrier.wait(timeout=60)
    ca = load_or_create_ca(Path(data_dir), clock=fixed_clock)
    results.put((ca.root_pem, sorted(ca.issuers)))
