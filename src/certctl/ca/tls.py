"""The HTTPS listener's own certificate, issued by the local CA.

``<data_dir>/tls/server.pem`` holds the leaf followed by its issuer; ``server.key`` its key
(PKCS#8, 0600). Both are rewritten together, key first, under ``tls/.lock``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from certctl.ca._files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_private_dir,
    exclusive_lock,
    write_atomic,
)
from certctl.ca.issuer import LocalCA
from certctl.ca.keys import KeyType, generate_key, load_private_key_pem, private_key_pem
from certctl.ca.lint import spki
from certctl.ca.profile import IPAddress, IssueRequest, aware_now
from certctl.domain.serials import new_serial

SERVER_CERT_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
BACKDATE = timedelta(minutes=5)  # tolerate clients whose clock lags a little
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def ensure_server_certificate(
    ca: LocalCA,
    data_dir: Path,
    hostnames: Sequence[str],
    clock: Callable[[], datetime],
) -> tuple[Path, Path]:
    """``(server.pem, server.key)``, (re)issued if missing, due for renewal, not from this CA,
    or not covering every name in ``hostnames`` plus localhost and the loopback addresses."""
    tls_dir = data_dir / "tls"
    ensure_private_dir(tls_dir)
    cert_path, key_path = tls_dir / "server.pem", tls_dir / "server.key"
    dns_names, ips = split_hostnames([*hostnames, *LOOPBACK_NAMES])
    with exclusive_lock(tls_dir / ".lock"):
        now = aware_now(clock)
        current = _load_current(ca, cert_path, key_path)
        if current is None or _needs_reissue(current, dns_names, ips, now):
            _issue(ca, cert_path, key_path, dns_names=dns_names, ips=ips, now=now)
    return cert_path, key_path


def split_hostnames(hostnames: Sequence[str]) -> tuple[tuple[str, ...], tuple[IPAddress, ...]]:
    """Normalised DNS names and IP addresses, each de-duplicated, in the order given."""
    dns_names: dict[str, None] = {}
    ips: dict[IPAddress, None] = {}
    for raw in hostnames:
        name = raw.strip().strip("[]").rstrip(".").lower()
        if not name:
            continue
        try:
            ips[ipaddress.ip_address(name)] = None
        except ValueError:
            if not name.isascii():
                raise ValueError(f"hostname {raw!r} must be given as an A-label") from None
            dns_names[name] = None
    return tuple(dns_names), tuple(ips)


def _load_current(ca: LocalCA, cert_path: Path, key_path: Path) -> x509.Certificate | None:
    """The stored leaf, if it parses, matches the stored key and was signed by one of our
    issuers (the CA may have been re-created since)."""
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = load_private_key_pem(key_path.read_bytes())
    except (OSError, ValueError):
        return None
    if spki(leaf.public_key()) != spki(key.public_key()):
        return None
    for issuer in ca.issuers.values():
        try:
            leaf.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return leaf
    return None


def _needs_reissue(
    leaf: x509.Certificate,
    dns_names: tuple[str, ...],
    ips: tuple[IPAddress, ...],
    now: datetime,
) -> bool:
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc - RENEW_BEFORE:
        return True
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return not (set(dns_names) <= have_dns and set(ips) <= have_ips)


def _issue(
    ca: LocalCA,
    cert_path: Path,
    key_path: Path,
    *,
    dns_names: tuple[str, ...],
    ips: tuple[IPAddress, ...],
    now: datetime,
) -> None:
    key = generate_key(KeyType.ECDSA_P256)
    issuer = ca.default_issuer
    start = now - BACKDATE
    # RFC 5280 §6.1.3: never outlive the issuer, the path would stop validating first.
    end = min(start + SERVER_CERT_LIFETIME, issuer.certificate.not_valid_after_utc)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    request = IssueRequest(
        csr=builder.sign(key, hashes.SHA256()),
        dns_names=dns_names,
        ip_addresses=ips,
        not_before=start,
        not_after=end,
        ekus=("serverAuth",),
        must_staple=False,
        serial=new_serial(),
    )
    issued = issuer.issue(request)
    write_atomic(key_path, private_key_pem(key), PRIVATE_FILE_MODE)
    write_atomic(cert_path, issued.chain_pem.encode("ascii"), PUBLIC_FILE_MODE)
