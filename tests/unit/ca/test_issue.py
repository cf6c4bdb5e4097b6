from __future__ import annotations

import dataclasses
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from certctl.ca import (
    FileKeyBackend,
    IssuedCertificate,
    LintError,
    LocalCA,
    csr_public_key,
    csr_signature_valid,
    key_info,
)
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.serials import canonical_serial
from tests.support.certs import openssl_verify
from tests.unit.ca.helpers import NOW, ec_key, ip, make_csr, make_request

T = TypeVar("T", bound=x509.ExtensionType)
OPENSSL = "/usr/bin/openssl"


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _strict_verify(tmp_path: Path, ca: LocalCA, issued: IssuedCertificate, purpose: str) -> None:
    """openssl's RFC 5280 strict mode and the TLS purpose checks, on top of a plain verify."""
    cmd = [OPENSSL, "verify", "-x509_strict", "-purpose", purpose]
    cmd += ["-CAfile", str(_write(tmp_path / "root.pem", ca.root_pem))]
    cmd += ["-untrusted", str(_write(tmp_path / "int.pem", ca.default_issuer.cert_pem))]
    result = subprocess.run(
        [*cmd, str(_write(tmp_path / "leaf.pem", issued.leaf_pem))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_leaf_signature_verifies_against_the_issuer(local_ca: LocalCA) -> None:
    issued = local_ca.default_issuer.issue(make_request())
    cert = issued.certificate
    issuer_key = local_ca.default_issuer.certificate.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    issuer_key.verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    assert cert.issuer == local_ca.default_issuer.certificate.subject


def test_openssl_verifies_the_chain(local_ca: LocalCA, tmp_path: Path) -> None:
    issued = local_ca.default_issuer.issue(make_request())
    openssl_verify(
        _write(tmp_path / "root.pem", local_ca.root_pem),
        _write(tmp_path / "intermediate.pem", local_ca.default_issuer.cert_pem),
        _write(tmp_path / "leaf.pem", issued.leaf_pem),
    )
    _strict_verify(tmp_path, local_ca, issued, "sslserver")


def test_openssl_verifies_rsa_chain(rsa_ca: LocalCA, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = rsa_ca.default_issuer.issue(make_request(make_csr(key)))
    assert issued.key_algorithm == "RSA" and issued.key_size == 2048
    usage = _ext(issued.certificate, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    _strict_verify(tmp_path, rsa_ca, issued, "sslserver")


def test_p384_issuer_signs_leaves_with_sha384(p384_ca: LocalCA, tmp_path: Path) -> None:
    issued = p384_ca.default_issuer.issue(make_request())
    assert issued.certificate.signature_hash_algorithm is not None
    assert issued.certificate.signature_hash_algorithm.name == "sha384"
    _strict_verify(tmp_path, p384_ca, issued, "sslserver")


def test_client_auth_only(local_ca: LocalCA, tmp_path: Path) -> None:
    issued = local_ca.default_issuer.issue(make_request(ekus=("clientAuth",)))
    ekus = list(_ext(issued.certificate, x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.CLIENT_AUTH]
    _strict_verify(tmp_path, local_ca, issued, "sslclient")


def test_both_ekus(local_ca: LocalCA) -> None:
    issued = local_ca.default_issuer.issue(make_request(ekus=("serverAuth", "clientAuth")))
    ekus = list(_ext(issued.certificate, x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not _ext(issued.certificate, x509.ExtendedKeyUsage).critical


def test_san_equals_the_requested_names(local_ca: LocalCA) -> None:
    names = ("a.example", "b.example", "*.c.example")
    addresses = (ip("192.0.2.7"), ip("2001:db8::1"))
    issued = local_ca.default_issuer.issue(make_request(dns_names=names, ip_addresses=addresses))
    san = _ext(issued.certificate, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == list(names)
    assert san.value.get_values_for_type(x509.IPAddress) == list(addresses)
    assert not san.critical  # the subject carries a CN
    cns = issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [cn.value for cn in cns] == ["a.example"]


def test_the_cn_is_the_first_name_that_fits_in_one(local_ca: LocalCA) -> None:
    long_name = "x" * 60 + ".example"
    issued = local_ca.default_issuer.issue(make_request(dns_names=(long_name, "short.example")))
    cns = issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [cn.value for cn in cns] == ["short.example"]
    assert not _ext(issued.certificate, x509.SubjectAlternativeName).critical


def test_only_long_names_give_empty_subject_and_critical_san(local_ca: LocalCA) -> None:
    names = ("x" * 60 + ".example", "y" * 60 + ".example")
    issued = local_ca.default_issuer.issue(make_request(dns_names=names))
    assert len(issued.certificate.subject) == 0
    assert _ext(issued.certificate, x509.SubjectAlternativeName).critical


def test_ip_only_certificate(local_ca: LocalCA, tmp_path: Path) -> None:
    issued = local_ca.default_issuer.issue(make_request(dns_names=(), ip_addresses=(ip("::1"),)))
    assert len(issued.certificate.subject) == 0
    _strict_verify(tmp_path, local_ca, issued, "sslserver")


@pytest.mark.parametrize("must_staple", [True, False])
def test_must_staple(local_ca: LocalCA, must_staple: bool) -> None:
    issued = local_ca.default_issuer.issue(make_request(must_staple=must_staple))
    try:
        ext = issued.certificate.extensions.get_extension_for_oid(ExtensionOID.TLS_FEATURE)
    except x509.ExtensionNotFound:
        assert not must_staple
        return
    assert must_staple
    assert isinstance(ext.value, x509.TLSFeature)
    assert list(ext.value) == [x509.TLSFeatureType.status_request]


def test_leaf_profile(local_ca: LocalCA) -> None:
    issuer = local_ca.default_issuer
    cert = issuer.issue(make_request()).certificate
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment  # not for an EC key
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuer.ski
    ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert _ext(cert, x509.SubjectKeyIdentifier).value == ski
    assert cert.version is x509.Version.v3


def test_issued_certificate_fields(local_ca: LocalCA) -> None:
    request = make_request()
    issued = local_ca.default_issuer.issue(request)
    cert = issued.certificate
    assert issued.serial_hex == canonical_serial(request.serial)
    assert cert.serial_number == request.serial
    assert issued.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert issued.leaf_pem == cert.public_bytes(serialization.Encoding.PEM).decode()
    assert issued.chain_pem == issued.leaf_pem + local_ca.default_issuer.cert_pem
    assert (issued.not_before, issued.not_after) == (request.not_before, request.not_after)
    assert (issued.key_algorithm, issued.key_size) == ("ECDSA", 256)


def test_validity_is_truncated_to_whole_seconds(local_ca: LocalCA) -> None:
    start = NOW + timedelta(microseconds=999_999)
    issued = local_ca.default_issuer.issue(
        make_request(not_before=start, not_after=start + timedelta(days=1))
    )
    assert issued.not_before == NOW
    assert issued.not_after == NOW + timedelta(days=1)


def test_serials_over_1000_issuances(local_ca: LocalCA) -> None:
    csr = make_csr(ec_key())
    serials = [
        local_ca.default_issuer.issue(make_request(csr)).certificate.serial_number
        for _ in range(1000)
    ]
    assert len(set(serials)) == 1000
    assert all(0 < s < 2**159 for s in serials)
    # BR §7.1: 64 bits of CSPRNG output; the top bits of 159-bit draws are not all clear.
    assert max(s.bit_length() for s in serials) == 159


def test_csr_with_bad_signature_is_bad_csr(local_ca: LocalCA) -> None:
    der = bytearray(make_csr(ec_key()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last octet belongs to the signature
    tampered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(tampered))
    assert caught.value.type is ProblemType.BAD_CSR


def test_a_remembered_good_signature_does_not_vouch_for_a_tampered_copy(
    local_ca: LocalCA,
) -> None:
    # The check is remembered per CSR (the RA and the CA both ask): the same request with
    # another signature is another CSR, checked afresh.
    good = make_csr(ec_key())
    assert csr_signature_valid(good)
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der))
    assert tampered.tbs_certrequest_bytes == good.tbs_certrequest_bytes
    assert not csr_signature_valid(tampered)
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(tampered))
    assert caught.value.type is ProblemType.BAD_CSR
    local_ca.default_issuer.issue(make_request(good))


def test_the_ca_reuses_the_key_the_ra_read_from_the_same_csr(local_ca: LocalCA) -> None:
    # The library parses a CSR's key afresh on every call; the RA reads it before the
    # claim, so the CA's read before signing is a lookup. An equal CSR is the same key.
    csr = make_csr(ec_key())
    read_by_ra = csr_public_key(csr)
    hits = csr_public_key.cache_info().hits
    issued = local_ca.default_issuer.issue(make_request(csr))
    assert csr_public_key.cache_info().hits == hits + 1
    assert issued.certificate.public_key() == read_by_ra
    copy = x509.load_der_x509_csr(csr.public_bytes(serialization.Encoding.DER))
    assert csr_public_key(copy) is read_by_ra


def test_weak_rsa_key_is_bad_public_key(local_ca: LocalCA) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(make_csr(weak)))
    assert caught.value.type is ProblemType.BAD_PUBLIC_KEY


def test_ed448_key_is_bad_public_key(local_ca: LocalCA) -> None:
    csr = make_csr(ed448.Ed448PrivateKey.generate())
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(csr))
    assert caught.value.type is ProblemType.BAD_PUBLIC_KEY


def test_ed25519_leaf(local_ca: LocalCA) -> None:
    issued = local_ca.default_issuer.issue(
        make_request(make_csr(ed25519.Ed25519PrivateKey.generate()))
    )
    assert (issued.key_algorithm, issued.key_size) == ("Ed25519", 256)


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (X.690 §8.1), for content under 64 KiB."""
    size = len(content)
    length = bytes([size]) if size < 0x80 else bytes([0x82, size >> 8, size & 0xFF])
    return bytes([tag]) + length + content


def _forged_ed25519_csr(public: bytes) -> x509.CertificateSigningRequest:
    """A CSR (RFC 2986) for the Ed25519 key ``public``, "signed" with R = the identity
    point and S = 0, which verifies for a key of small order without any private key."""
    ed25519_oid = _der(0x06, bytes([0x2B, 0x65, 0x70]))  # 1.3.101.112, RFC 8410 §3
    algorithm = _der(0x30, ed25519_oid)
    spki = _der(0x30, algorithm + _der(0x03, b"\x00" + public))
    info = _der(0x30, _der(0x02, b"\x00") + _der(0x30, b"") + spki + _der(0xA0, b""))
    signature = (b"\x01" + b"\x00" * 31) + b"\x00" * 32
    return x509.load_der_x509_csr(_der(0x30, info + algorithm + _der(0x03, b"\x00" + signature)))


def test_an_ed25519_key_of_small_order_is_bad_public_key(local_ca: LocalCA) -> None:
    identity = b"\x01" + b"\x00" * 31  # the neutral point: order 1
    csr = _forged_ed25519_csr(identity)
    assert csr.is_signature_valid  # the forgery the check is for
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(csr))
    assert caught.value.type is ProblemType.BAD_PUBLIC_KEY
    assert "small order" in caught.value.detail


def test_csr_reusing_the_ca_key_is_rejected(local_ca: LocalCA, ca_dir: Path) -> None:
    issuer_key = FileKeyBackend(ca_dir / "ca" / "keys").load("issuing-ca-1")
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    with pytest.raises(AcmeError) as caught:
        local_ca.default_issuer.issue(make_request(make_csr(issuer_key)))
    assert caught.value.type is ProblemType.BAD_PUBLIC_KEY


def test_leaf_may_not_outlive_its_issuer(local_ca: LocalCA) -> None:
    end = local_ca.default_issuer.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(LintError, match="issuer"):
        local_ca.default_issuer.issue(make_request(not_after=end))


@pytest.mark.parametrize(
    "changes",
    [
        {"dns_names": ()},
        {"not_before": NOW.replace(tzinfo=None)},
        {"not_after": NOW - timedelta(days=1)},
        {"ekus": ()},
        {"ekus": ("codeSigning",)},
        {"serial": 0},
        {"serial": 2**159},
        {"serial": 12345},
    ],
)
def test_invalid_requests_are_rejected(changes: dict[str, object]) -> None:
    request = make_request()
    with pytest.raises(ValueError):
        dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def test_key_info() -> None:
    assert key_info(ec.generate_private_key(ec.SECP384R1()).public_key()) == ("ECDSA", 384)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert key_info(rsa_key.public_key()) == ("RSA", 2048)
    assert key_info(ed25519.Ed25519PrivateKey.generate().public_key()) == ("Ed25519", 256)
    with pytest.raises(AcmeError):
        key_info(ed448.Ed448PrivateKey.generate().public_key())
