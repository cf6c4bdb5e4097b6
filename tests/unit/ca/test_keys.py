from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certctl.ca import FileKeyBackend, KeyBackend, KeyType, generate_key
from certctl.ca.keys import private_key_pem, signature_hash


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("key_type", "curve"),
    [("ecdsa-p256", ec.SECP256R1), ("ecdsa-p384", ec.SECP384R1)],
)
def test_generate_ec_keys(key_type: str, curve: type[ec.EllipticCurve]) -> None:
    key = generate_key(key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, curve)


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_generate_rsa_keys(bits: int) -> None:
    key = generate_key(KeyType(f"rsa-{bits}"))
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == bits
    assert key.public_key().public_numbers().e == 65537


def test_default_key_type_is_p256() -> None:
    key = generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_unknown_key_type_is_rejected() -> None:
    with pytest.raises(ValueError):
        generate_key("dsa-1024")


def test_signature_hash_follows_curve_strength() -> None:
    assert isinstance(signature_hash(generate_key("ecdsa-p384")), hashes.SHA384)
    assert isinstance(signature_hash(generate_key("ecdsa-p256")), hashes.SHA256)


def test_file_backend_creates_private_files(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    backend: KeyBackend = FileKeyBackend(directory)
    key = backend.load_or_create("issuer-a", KeyType.ECDSA_P256)
    path = directory / "issuer-a.pem"
    assert _mode(directory) == 0o700
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert not list(directory.glob(".*.tmp"))
    assert private_key_pem(backend.load("issuer-a")) == private_key_pem(key)


def test_file_backend_returns_existing_key(tmp_path: Path) -> None:
    backend = FileKeyBackend(tmp_path)
    first = backend.load_or_create("k", "ecdsa-p256")
    again = backend.load_or_create("k", "rsa-2048")  # an existing key wins
    assert private_key_pem(again) == private_key_pem(first)


def test_file_backend_tightens_a_loose_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    FileKeyBackend(directory).load_or_create("k", "ecdsa-p256")
    assert _mode(directory) == 0o700


def test_file_backend_missing_key(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        FileKeyBackend(tmp_path).load("absent")


@pytest.mark.parametrize("name", ["", "../escape", "UPPER", "a/b", ".hidden"])
def test_file_backend_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        FileKeyBackend(tmp_path).load_or_create(name, "ecdsa-p256")
