"""Create the local CA on first start, load it on every later one.

Layout under ``<data_dir>/ca/`` (directory 0700)::

    .lock                       flock held while checking/creating
    root.pem                    self-signed root certificate
    issuers/<issuer_id>/cert.pem
    issuers/<issuer_id>/key-name   the KeyBackend name of the issuer's key
    keys/<name>.pem             FileKeyBackend: PKCS#8, 0600
    ocsp/<issuer_id>.pem        the issuer's delegated OCSP responder (certctl.ca.responder)

Serving processes never load the root key: it is read only while creating an issuer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from certctl.ca._files import PUBLIC_FILE_MODE, ensure_private_dir, exclusive_lock, write_atomic
from certctl.ca.issuer import Issuer, LocalCA, issuer_id, pem, subject_key_identifier
from certctl.ca.keys import (
    DEFAULT_KEY_TYPE,
    FileKeyBackend,
    KeyBackend,
    KeyType,
    PrivateKey,
    signature_hash,
)
from certctl.ca.lint import spki
from certctl.ca.profile import aware_now, whole_seconds
from certctl.domain.serials import new_serial

ROOT_KEY_NAME = "root-ca"
ROOT_LIFETIME = timedelta(days=3653)  # about 10 years
ISSUER_LIFETIME = timedelta(days=1826)  # about 5 years
# Backdate CA certificates a little so a relying party whose clock lags still accepts them.
BACKDATE = timedelta(hours=1)
_NAME_LIMIT = 64  # RFC 5280 Appendix A.1: ub-common-name / ub-organization-name


def load_or_create_ca(
    data_dir: Path,
    *,
    key_type: KeyType | str = DEFAULT_KEY_TYPE,
    clock: Callable[[], datetime],
    common_name_prefix: str = "certctl",
    key_backend: KeyBackend | None = None,
) -> LocalCA:
    """The CA stored under ``data_dir/ca``, created first if it does not exist.

    ``key_type`` only matters on creation; an existing CA is loaded as it is. Safe to call from
    several processes at once: all of them end up with the same CA.
    """
    kind = KeyType(key_type)
    if len(f"{common_name_prefix} Issuing CA 999") > _NAME_LIMIT:
        raise ValueError("common_name_prefix is too long")
    ca_dir = data_dir / "ca"
    ensure_private_dir(ca_dir)
    backend = key_backend if key_backend is not None else FileKeyBackend(ca_dir / "keys")
    names = _Names(common_name_prefix)
    with exclusive_lock(ca_dir / ".lock"):
        root = _load_or_create_root(ca_dir, backend, kind, names, clock)
        issuers = _load_issuers(ca_dir, backend, root)
        if not issuers:
            issuers = [
                _create_issuer(ca_dir, backend, kind=kind, names=names, root=root, clock=clock)
            ]
    return LocalCA(root, issuers, ca_dir=ca_dir, key_backend=backend)


class _Names:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def root(self) -> x509.Name:
        return self._name(f"{self.prefix} Root CA")

    def issuer(self, ordinal: int) -> x509.Name:
        return self._name(f"{self.prefix} Issuing CA {ordinal}")

    def _name(self, common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.prefix),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )


def _load_or_create_root(
    ca_dir: Path,
    backend: KeyBackend,
    kind: KeyType,
    names: _Names,
    clock: Callable[[], datetime],
) -> x509.Certificate:
    path = ca_dir / "root.pem"
    if path.exists():
        root = x509.load_pem_x509_certificate(path.read_bytes())
        root.verify_directly_issued_by(root)  # RFC 5280 §3.2: a root is self-signed
        return root
    key = backend.load_or_create(ROOT_KEY_NAME, kind)
    root = _self_signed_root(key, names.root(), aware_now(clock))
    write_atomic(path, pem(root).encode("ascii"), PUBLIC_FILE_MODE)
    return root


def _self_signed_root(key: PrivateKey, name: x509.Name, now: datetime) -> x509.Certificate:
    start = now - BACKDATE
    builder = (
        _ca_builder(name, name, key, start, start + ROOT_LIFETIME)
        # RFC 5280 §4.2.1.9: critical CA:TRUE; no pathLenConstraint so the root can sign tiers.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(digital_signature=False), critical=True)
        # RFC 5280 §4.2.1.1: AKI may be omitted from a self-signed certificate.
    )
    return builder.sign(key, signature_hash(key))


def _issuer_certificate(
    key: PrivateKey,
    name: x509.Name,
    root: x509.Certificate,
    root_key: PrivateKey,
    now: datetime,
) -> x509.Certificate:
    start = now - BACKDATE
    end = min(start + ISSUER_LIFETIME, root.not_valid_after_utc)
    root_ski = subject_key_identifier(root)
    builder = (
        _ca_builder(name, root.subject, key, start, end)
        # RFC 5280 §4.2.1.9: pathLenConstraint 0, this CA signs only end-entity certificates.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # digitalSignature lets this CA sign OCSP responses itself (RFC 6960 §4.2.2.2).
        .add_extension(_ca_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
    )
    return builder.sign(root_key, signature_hash(root_key))


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    start: datetime,
    end: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(whole_seconds(start))
        .not_valid_after(whole_seconds(end))
        # RFC 5280 §4.2.1.2: MUST appear in every CA certificate.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    """RFC 5280 §4.2.1.3: keyCertSign and cRLSign, marked critical."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _load_issuers(ca_dir: Path, backend: KeyBackend, root: x509.Certificate) -> list[Issuer]:
    base = ca_dir / "issuers"
    if not base.is_dir():
        return []
    root_pem = pem(root)
    issuers = []
    for directory in sorted(base.iterdir()):
        cert_path = directory / "cert.pem"
        if not cert_path.is_file():
            continue  # an interrupted creation; its key is reused by the next one
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(root)
        if issuer_id(cert) != directory.name:
            raise ValueError(f"issuer directory {directory.name} holds another certificate")
        key = backend.load((directory / "key-name").read_text("ascii").strip())
        issuers.append(Issuer(cert, key, root_pem))
    return issuers


def _create_issuer(
    ca_dir: Path,
    backend: KeyBackend,
    *,
    kind: KeyType,
    names: _Names,
    root: x509.Certificate,
    clock: Callable[[], datetime],
) -> Issuer:
    ordinal = 1  # the first issuer; rotation will add further ordinals
    key_name = f"issuing-ca-{ordinal}"
    key = backend.load_or_create(key_name, kind)
    root_key = backend.load(ROOT_KEY_NAME)
    if spki(root_key.public_key()) != spki(root.public_key()):
        raise ValueError("the root key does not match root.pem")
    cert = _issuer_certificate(key, names.issuer(ordinal), root, root_key, aware_now(clock))
    ensure_private_dir(ca_dir / "issuers")
    directory = ca_dir / "issuers" / issuer_id(cert)
    ensure_private_dir(directory)
    write_atomic(directory / "key-name", f"{key_name}\n".encode("ascii"), PUBLIC_FILE_MODE)
    # cert.pem last: its presence marks the issuer as complete.
    write_atomic(directory / "cert.pem", pem(cert).encode("ascii"), PUBLIC_FILE_MODE)
    return Issuer(cert, key, pem(root))
