"""CA signing keys behind a backend seam.

``KeyBackend`` is the seam an HSM or a KMS would implement later; ``FileKeyBackend`` keeps
unencrypted PKCS#8 PEM files, 0600, in a 0700 directory. Only ``certctl.ca`` touches them.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certctl.ca._files import (
    PRIVATE_FILE_MODE,
    ensure_private_dir,
    exclusive_lock,
    write_atomic,
)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class KeyType(StrEnum):
    """The key types a CA (or the TLS listener) may be created with."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"


DEFAULT_KEY_TYPE = KeyType.ECDSA_P256

_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.ECDSA_P256: ec.SECP256R1(),
    KeyType.ECDSA_P384: ec.SECP384R1(),
}
_RSA_BITS: dict[KeyType, int] = {
    KeyType.RSA_2048: 2048,
    KeyType.RSA_3072: 3072,
    KeyType.RSA_4096: 4096,
}


def generate_key(key_type: KeyType | str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh private key of ``key_type`` (a ``KeyType`` or its string value)."""
    kind = KeyType(key_type)
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind])
    # RFC 3279 §2.3.1 / CA/B BR §6.1.6: public exponent 65537.
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[kind])


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest to sign with: match the curve strength (RFC 5758 §3.2), SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (RFC 5958); protection comes from file modes."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("unsupported CA key type")
    return key


class KeyBackend(Protocol):
    """Where CA private keys live. Names are short, lower-case identifiers."""

    def load_or_create(self, name: str, key_type: KeyType | str) -> PrivateKey:
        """The key called ``name``; generated with ``key_type`` if it does not exist yet.

        An existing key is returned as is, whatever ``key_type`` says.
        """
        ...

    def load(self, name: str) -> PrivateKey:
        """The existing key called ``name``; ``KeyError`` if there is none."""
        ...


class FileKeyBackend:
    """Keys as ``<directory>/<name>.pem`` files, PKCS#8 PEM, mode 0600, directory 0700."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        return self._directory

    def load(self, name: str) -> PrivateKey:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(name) from None
        return load_private_key_pem(data)

    def load_or_create(self, name: str, key_type: KeyType | str) -> PrivateKey:
        kind = KeyType(key_type)
        ensure_private_dir(self._directory)
        # Several processes may start at once: check-then-create under one lock.
        with exclusive_lock(self._directory / ".lock"):
            try:
                return self.load(name)
            except KeyError:
                pass
            key = generate_key(kind)
            write_atomic(self._path(name), private_key_pem(key), PRIVATE_FILE_MODE)
            return key

    def _path(self, name: str) -> Path:
        if not _KEY_NAME.fullmatch(name):
            raise ValueError(f"invalid key name {name!r}")
        return self._directory / f"{name}.pem"
