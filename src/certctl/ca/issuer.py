"""The local CA: a root certificate and the issuing intermediates that sign leaves."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certctl.ca.keys import KeyBackend, PrivateKey, signature_hash
from certctl.ca.lint import lint_leaf, spki
from certctl.ca.profile import IssuedCertificate, IssueRequest, build_leaf, key_info
from certctl.domain.ed25519 import ed25519_small_order
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.serials import canonical_serial

__all__ = ["IssueRequest", "IssuedCertificate", "Issuer", "LocalCA", "issuer_id", "key_info"]

# CA/B BR §6.1.5: RSA moduli of at least 2048 bits, a whole number of octets.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

T = TypeVar("T")


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def subject_key_identifier(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The certificate's SKI extension, or the RFC 5280 §4.2.1.2 method (1) value if absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def issuer_id(cert: x509.Certificate) -> str:
    """A stable, short id for an issuing CA: ``iss-`` and the first 8 octets of its SKI in hex."""
    return "iss-" + subject_key_identifier(cert).digest.hex()[:16]


@functools.lru_cache(maxsize=256)
def csr_signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    """Whether the CSR's self-signature verifies (RFC 2986 §3), remembered per request.

    The RA checks it before an order moves to processing and the CA again before signing:
    the second check is a lookup. Keyed by equality (the DER), so a hit is the same bytes.
    """
    return csr.is_signature_valid


@functools.lru_cache(maxsize=256)
def csr_public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
    """The CSR's public key, parsed once per request (the library parses it afresh on
    every call, point check included): the RA reads it before an order moves to
    processing and the CA again before signing. Keyed by equality, like
    ``csr_signature_valid``; a key that does not parse raises, and is not remembered."""
    return csr.public_key()


def checked_public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
    """The CSR's public key, once its self-signature proves possession (RFC 2986 §3)."""
    try:
        public_key = csr_public_key(csr)
        valid = csr_signature_valid(csr)
    except UnsupportedAlgorithm as exc:
        raise AcmeError(ProblemType.BAD_CSR, "CSR uses an unsupported algorithm") from exc
    except (ValueError, TypeError) as exc:
        raise AcmeError(ProblemType.BAD_CSR, "CSR cannot be parsed") from exc
    if not valid:
        raise AcmeError(ProblemType.BAD_CSR, "CSR signature is invalid")
    _check_key_strength(public_key)
    return public_key


def _check_key_strength(public_key: CertificatePublicKeyTypes) -> None:
    """A last line of defence; the key policy proper lives in ``certctl.policy``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS or public_key.key_size % 8:
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "RSA key size is not allowed")
        if numbers.e < 3 or numbers.e % 2 == 0:  # CA/B BR §6.1.6: odd, at least 3
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "RSA public exponent is not allowed")
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, _ALLOWED_CURVES):
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "elliptic curve is not allowed")
        return
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "public key algorithm is not allowed")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if ed25519_small_order(raw):
        # Anyone can sign for such a key (R the identity, S = 0), its CSR's
        # self-signature included: it proves possession of nothing.
        raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "Ed25519 key is a point of small order")


class Issuer:
    """One issuing CA certificate and its key. Immutable after construction."""

    __slots__ = (
        "_key",
        "_spki",
        "aki",
        "cert_pem",
        "certificate",
        "chain_pem",
        "id",
        "not_after",
        "ski",
    )

    def __init__(self, certificate: x509.Certificate, key: PrivateKey, root_pem: str) -> None:
        self._spki = spki(key.public_key())
        if spki(certificate.public_key()) != self._spki:
            raise ValueError("issuer key does not match its certificate")
        self.certificate = certificate
        self._key = key
        self.id = issuer_id(certificate)
        self.cert_pem = pem(certificate)
        # Intermediate then root: appended after a leaf, this completes the path.
        self.chain_pem = self.cert_pem + root_pem
        self.ski = subject_key_identifier(certificate).digest
        self.aki = _authority_key_id(certificate)
        # No leaf it signs may outlive it (RFC 5280 §6.1.3: a path is valid only while
        # every certificate on it is).
        self.not_after = certificate.not_valid_after_utc

    def __repr__(self) -> str:
        return f"Issuer(id={self.id!r}, subject={self.certificate.subject.rfc4514_string()!r})"

    def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Sign a leaf for ``request``; ``AcmeError`` (badCSR/badPublicKey) for bad client
        input, ``LintError`` if the result fails the pre-issuance checks."""
        public_key = checked_public_key(request.csr)
        if spki(public_key) == self._spki:
            raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "CSR reuses a CA key")
        ski = x509.SubjectKeyIdentifier(self.ski)
        builder = build_leaf(request, public_key, self.certificate, ski)
        cert = builder.sign(self._key, signature_hash(self._key))
        lint_leaf(cert, request, self.certificate, public_key)
        return self._issued(cert)

    def sign_revocation(self, build: Callable[[x509.Certificate, PrivateKey], T]) -> T:
        """Run ``build(issuer certificate, issuer key)`` and return its result.

        The one door through which the issuer key leaves this class: for the builders of
        ``certctl.revocation`` (a CRL, RFC 5280 §5; a delegated OCSP responder certificate,
        RFC 6960 §4.2.2.2), the other component allowed to sign (ARCHITECTURE.md).
        """
        return build(self.certificate, self._key)

    def _issued(self, cert: x509.Certificate) -> IssuedCertificate:
        leaf_pem = pem(cert)
        algorithm, size = key_info(cert.public_key())
        return IssuedCertificate(
            serial_hex=canonical_serial(cert.serial_number),
            certificate=cert,
            leaf_pem=leaf_pem,
            chain_pem=leaf_pem + self.cert_pem,  # RFC 8555 §7.4.2: leaf first, no root
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_algorithm=algorithm,
            key_size=size,
        )


def _authority_key_id(cert: x509.Certificate) -> bytes:
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return b""
    return aki.key_identifier or b""


class LocalCA:
    """The root certificate and the issuers it has signed, keyed by ``Issuer.id``.

    ``ca_dir`` and ``key_backend`` (both set by ``load_or_create_ca``) are where the OCSP
    responder keys and certificates are kept (``certctl.ca.responder``); a CA built
    without them keeps its responders in memory only.
    """

    __slots__ = ("_issuers", "ca_dir", "ca_key_digests", "key_backend", "root", "root_pem")

    def __init__(
        self,
        root: x509.Certificate,
        issuers: Iterable[Issuer],
        *,
        ca_dir: Path | None = None,
        key_backend: KeyBackend | None = None,
    ) -> None:
        self.root = root
        self.root_pem = pem(root)
        self.ca_dir = ca_dir
        self.key_backend = key_backend
        by_id = {issuer.id: issuer for issuer in issuers}
        if not by_id:
            raise ValueError("a CA needs at least one issuer")
        self._issuers: Mapping[str, Issuer] = MappingProxyType(by_id)
        # Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo of the root's and every
        # issuer's key: a subscriber's key must be none of them (checked before a
        # finalize claims its order, so the refusal leaves the order ready).
        self.ca_key_digests = frozenset(
            hashlib.sha256(spki(cert.public_key())).hexdigest()
            for cert in (root, *(issuer.certificate for issuer in by_id.values()))
        )

    def __repr__(self) -> str:
        return f"LocalCA(root={self.root.subject.rfc4514_string()!r}, issuers={list(self.issuers)})"

    @property
    def issuers(self) -> Mapping[str, Issuer]:
        return self._issuers

    @property
    def default_issuer(self) -> Issuer:
        """The issuer new certificates should come from: the one valid the longest."""
        return max(self._issuers.values(), key=lambda i: i.certificate.not_valid_after_utc)
