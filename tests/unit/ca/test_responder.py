"""The OCSP responder key and certificate kept beside the CA (certctl.ca.responder)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certctl.ca import LocalCA, PrivateKey, load_or_create_ca, load_or_issue_responder
from certctl.ca.lint import spki
from certctl.ca.responder import IssueResponder, responder_key_type
from certctl.revocation import issue_responder_certificate, needs_rotation
from tests.unit.ca.helpers import NOW, fixed_clock


def issue_at(now: datetime, calls: list[int]) -> IssueResponder:
    def issue(
        cert: x509.Certificate, key: PrivateKey, responder_key: PrivateKey
    ) -> x509.Certificate:
        calls.append(1)
        return issue_responder_certificate(cert, key, responder_key, now=now)

    return issue


def load(ca: LocalCA, now: datetime, calls: list[int]) -> tuple[x509.Certificate, PrivateKey]:
    return load_or_issue_responder(
        ca,
        ca.default_issuer.id,
        is_current=lambda cert: not needs_rotation(cert, now),
        issue=issue_at(now, calls),
    )


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return load_or_create_ca(tmp_path, clock=fixed_clock)


def test_issued_once_then_reused_across_loads(ca: LocalCA, tmp_path: Path) -> None:
    calls: list[int] = []
    cert, key = load(ca, NOW, calls)
    cert.verify_directly_issued_by(ca.default_issuer.certificate)
    again, again_key = load(load_or_create_ca(tmp_path, clock=fixed_clock), NOW, calls)
    assert (again, again_key.private_numbers()) == (cert, key.private_numbers())
    assert len(calls) == 1
    path = tmp_path / "ca" / "ocsp" / f"{ca.default_issuer.id}.pem"
    assert x509.load_pem_x509_certificate(path.read_bytes()) == cert
    assert path.stat().st_mode & 0o777 == 0o644
    key_path = tmp_path / "ca" / "keys" / f"ocsp-{ca.default_issuer.id}.pem"
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_reissued_when_due_with_the_same_key(ca: LocalCA) -> None:
    calls: list[int] = []
    cert, key = load(ca, NOW, calls)
    later = NOW + timedelta(days=24)
    rotated, rotated_key = load(ca, later, calls)
    assert rotated != cert and len(calls) == 2
    assert rotated_key.private_numbers() == key.private_numbers()


def test_a_stored_certificate_of_another_ca_is_replaced(ca: LocalCA, tmp_path: Path) -> None:
    other = load_or_create_ca(tmp_path / "other", clock=fixed_clock)
    calls: list[int] = []
    foreign, _ = load(other, NOW, calls)
    path = tmp_path / "ca" / "ocsp" / f"{ca.default_issuer.id}.pem"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(foreign.public_bytes(serialization.Encoding.PEM))
    cert, _ = load(ca, NOW, calls)
    assert cert != foreign
    cert.verify_directly_issued_by(ca.default_issuer.certificate)
    path.write_text("not a certificate")
    assert load(ca, NOW, calls)[0] != cert  # unreadable: issued again


def test_in_memory_ca_keeps_nothing(ca: LocalCA) -> None:
    bare = LocalCA(ca.root, ca.issuers.values())
    calls: list[int] = []
    cert, key = load(bare, NOW, calls)
    cert.verify_directly_issued_by(ca.default_issuer.certificate)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(KeyError):
        load_or_issue_responder(
            bare, "iss-none", is_current=lambda _: True, issue=issue_at(NOW, calls)
        )


def test_responder_key_type_follows_the_issuer(
    ca: LocalCA, rsa_ca: LocalCA, p384_ca: LocalCA
) -> None:
    assert responder_key_type(ca.default_issuer).value == "ecdsa-p256"
    assert responder_key_type(p384_ca.default_issuer).value == "ecdsa-p384"
    assert responder_key_type(rsa_ca.default_issuer).value == "rsa-2048"
    assert isinstance(rsa_ca.default_issuer.certificate.public_key(), rsa.RSAPublicKey)


def test_sign_revocation_hands_the_builder_the_issuer_key(ca: LocalCA) -> None:
    issuer = ca.default_issuer
    cert, key = issuer.sign_revocation(lambda cert, key: (cert, key))
    assert cert == issuer.certificate
    assert spki(key.public_key()) == spki(cert.public_key())
