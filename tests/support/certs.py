"""Checks on certificates an ACME client obtained from a served instance."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

from tests.support.gating import require_executable


@dataclass(frozen=True)
class KeyType:
    """A key type requested from an ACME client, with each client's spelling of it."""

    id: str
    certbot_args: tuple[str, ...]
    lego_key_type: str
    expected: str  # what describe_public_key() must return for the issued leaf


ECDSA_P256 = KeyType(
    id="ecdsa-p256",
    certbot_args=("--key-type", "ecdsa", "--elliptic-curve", "secp256r1"),
    lego_key_type="ec256",
    expected="ecdsa-secp256r1",
)
RSA_2048 = KeyType(
    id="rsa-2048",
    certbot_args=("--key-type", "rsa", "--rsa-key-size", "2048"),
    lego_key_type="rsa2048",
    expected="rsa-2048",
)
KEY_TYPES = (ECDSA_P256, RSA_2048)


def describe_public_key(key: PublicKeyTypes) -> str:
    """``ecdsa-<curve>`` or ``rsa-<bits>``; anything else by its class name."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ecdsa-{key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def load_chain(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order."""
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    assert certs, f"no certificate in {path}"
    return certs


def load_private_key(path: Path) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def dns_sans(cert: x509.Certificate) -> list[str]:
    """The DNS names of the subjectAltName extension, sorted."""
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_pem(path: Path, certs: list[x509.Certificate]) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def openssl_verify(root_pem: Path, untrusted_pem: Path, leaf_pem: Path) -> None:
    """``openssl verify -CAfile root -untrusted chain leaf`` must print ``<leaf>: OK``."""
    openssl = require_executable("openssl", "apt-get install openssl")
    cmd = [openssl, "verify", "-CAfile", str(root_pem), "-untrusted", str(untrusted_pem)]
    result = subprocess.run(
        [*cmd, str(leaf_pem)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), (
        f"openssl verify failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )


def assert_issued(
    *,
    leaf_pem: Path,
    chain_pem: Path,
    key_pem: Path,
    root_pem: Path,
    names: tuple[str, ...],
    key_type: KeyType,
) -> x509.Certificate:
    """The common checks on an obtained certificate; returns the leaf.

    ``leaf_pem`` holds the leaf alone, ``chain_pem`` the intermediate(s) the server sent.
    """
    (leaf,) = load_chain(leaf_pem)
    chain = load_chain(chain_pem)
    assert dns_sans(leaf) == sorted(names)
    assert describe_public_key(leaf.public_key()) == key_type.expected
    private_key = load_private_key(key_pem)
    assert _spki(private_key.public_key()) == _spki(leaf.public_key()), (
        f"{key_pem} does not hold the private key of {leaf_pem}"
    )
    assert leaf.issuer == chain[0].subject, "chain does not start with the leaf's issuer"
    openssl_verify(root_pem, chain_pem, leaf_pem)
    return leaf
