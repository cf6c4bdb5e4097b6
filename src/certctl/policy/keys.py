"""Subscriber key policy per profile (names from ``certctl.domain.model.KEY_ALGORITHMS``)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Profile

_CURVES = {"secp256r1": "EC-P256", "secp384r1": "EC-P384", "secp521r1": "EC-P521"}


def key_algorithm_name(key: CertificatePublicKeyTypes) -> str | None:
    """The profile vocabulary name of ``key``, or None for anything we never accept."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return None


def check_subscriber_key(profile: Profile, key: CertificatePublicKeyTypes) -> None:
    """RFC 8555 §7.4: a CSR whose key the CA will not certify is a badCSR."""
    name = key_algorithm_name(key)
    if name is None or name not in profile.key_algorithms:
        allowed = ", ".join(profile.key_algorithms)
        raise AcmeError(
            ProblemType.BAD_CSR,
            f"key type {name or 'unsupported'} is not allowed by profile {profile.id} "
            f"(allowed: {allowed})",
        )
    if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e != 65537:
        raise AcmeError(ProblemType.BAD_CSR, "RSA public exponent must be 65537")
