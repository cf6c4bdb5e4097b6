from __future__ import annotations

import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl.ca import LocalCA, ensure_server_certificate
from certctl.ca.tls import split_hostnames
from tests.support.certs import load_chain, load_private_key
from tests.unit.ca.helpers import NOW, fixed_clock, ip

OPENSSL = "/usr/bin/openssl"


def _sans(cert: x509.Certificate) -> tuple[set[str], set[object]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def _ensure(ca: LocalCA, data_dir: Path, *hostnames: str, days: int = 0) -> tuple[Path, Path]:
    return ensure_server_certificate(ca, data_dir, hostnames, lambda: NOW + timedelta(days=days))


def test_server_certificate_files(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, key_path = _ensure(local_ca, tmp_path, "ca.example", "10.0.0.5")
    assert (cert_path, key_path) == (
        tmp_path / "tls" / "server.pem",
        tmp_path / "tls" / "server.key",
    )
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    leaf, intermediate = load_chain(cert_path)
    assert intermediate == local_ca.default_issuer.certificate
    dns, ips = _sans(leaf)
    assert dns == {"ca.example", "localhost"}
    assert ips == {ip("10.0.0.5"), ip("127.0.0.1"), ip("::1")}
    ekus = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == timedelta(days=365)
    assert load_private_key(key_path).public_key() == leaf.public_key()


def test_openssl_accepts_the_server_certificate(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, _ = _ensure(local_ca, tmp_path, "ca.example")
    root = tmp_path / "root.pem"
    root.write_text(local_ca.root_pem)
    cmd = [OPENSSL, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(root)]
    cmd += ["-untrusted", str(cert_path), "-verify_hostname", "ca.example", str(cert_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kept_when_it_still_fits(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, key_path = _ensure(local_ca, tmp_path, "a.example", "b.example")
    before = cert_path.read_bytes(), key_path.read_bytes()
    _ensure(local_ca, tmp_path, "b.example", days=300)  # a subset, 35 days before expiry
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_reissued_for_a_new_hostname(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, _ = _ensure(local_ca, tmp_path, "a.example")
    first = load_chain(cert_path)[0]
    _ensure(local_ca, tmp_path, "a.example", "new.example")
    second = load_chain(cert_path)[0]
    assert second.serial_number != first.serial_number
    assert {"a.example", "new.example"} <= _sans(second)[0]


def test_reissued_within_30_days_of_expiry(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, _ = _ensure(local_ca, tmp_path)
    first = load_chain(cert_path)[0]
    _ensure(local_ca, tmp_path, days=340)
    renewed = load_chain(cert_path)[0]
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc


def test_reissued_when_the_key_is_damaged(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, key_path = _ensure(local_ca, tmp_path)
    first = load_chain(cert_path)[0]
    key_path.write_text("not a key")
    _ensure(local_ca, tmp_path)
    assert load_chain(cert_path)[0].serial_number != first.serial_number
    assert load_private_key(key_path).public_key() == load_chain(cert_path)[0].public_key()


def test_reissued_for_another_ca(local_ca: LocalCA, p384_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, _ = _ensure(p384_ca, tmp_path)
    _ensure(local_ca, tmp_path)
    load_chain(cert_path)[0].verify_directly_issued_by(local_ca.default_issuer.certificate)


def test_hostname_normalisation() -> None:
    dns, ips = split_hostnames(["CA.Example.", " [::1] ", "ca.example", "", "192.0.2.1"])
    assert dns == ("ca.example",)
    assert ips == (ip("::1"), ip("192.0.2.1"))
    with pytest.raises(ValueError):
        split_hostnames(["bücher.example"])


def test_loopback_names_only_by_default(local_ca: LocalCA, tmp_path: Path) -> None:
    cert_path, _ = ensure_server_certificate(local_ca, tmp_path, [], fixed_clock)
    assert _sans(load_chain(cert_path)[0])[0] == {"localhost"}
