"""Key helpers for signing CRLs, OCSP responses and responder certificates.

``certctl.ca`` has its own versions of these; the two components do not import each other
(ARCHITECTURE.md, dependency direction), so the few lines live here too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

# The key types a certctl CA (and its OCSP responder) signs with.
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SignatureHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

_DER_SEQUENCE = 0x30
_DER_BIT_STRING = 0x03


def signature_hash(key: PrivateKey) -> SignatureHash:
    """The digest to sign with: match the curve strength (RFC 5480 §4), else SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size > 384:
            return hashes.SHA512()
        if key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def require_key_of(cert: x509.Certificate, key: PrivateKey, what: str) -> None:
    """Refuse to sign with a key that does not belong to ``cert``: the result would not verify."""
    if spki(cert.public_key()) != spki(key.public_key()):
        raise ValueError(f"the {what} key does not match its certificate")


def key_identifier(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The certificate's SKI, or the RFC 5280 §4.2.1.2 method (1) value if it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def subject_public_key_bits(cert: x509.Certificate) -> bytes:
    """The value of the subjectPublicKey BIT STRING, without its unused-bits octet.

    RFC 6960 §4.1.1: CertID.issuerKeyHash hashes exactly these octets. They are read from
    the SubjectPublicKeyInfo DER (RFC 5280 §4.1), so no key type needs special handling.
    """
    der = spki(cert.public_key())
    start, end = _value(der, 0, _DER_SEQUENCE)
    _, algorithm_end = _value(der, start, _DER_SEQUENCE)
    bits_start, bits_end = _value(der, algorithm_end, _DER_BIT_STRING)
    if bits_end != end or der[bits_start] != 0:
        raise ValueError("unexpected SubjectPublicKeyInfo encoding")
    return der[bits_start + 1 : bits_end]


def _value(der: bytes, offset: int, tag: int) -> tuple[int, int]:
    """(start, end) of the value of the DER element at ``offset``, which must be ``tag``."""
    if der[offset] != tag:
        raise ValueError("unexpected DER tag")
    length, start = der[offset + 1], offset + 2
    if length & 0x80:  # X.690 §8.1.3.5: long form, the low bits count the length octets
        count = length & 0x7F
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    return start, start + length


def utc_seconds(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC, to the second (RFC 5280 §5.1.2.4 encodes times to the second).

    Naive datetimes are refused: every time in certctl is timezone-aware.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)
