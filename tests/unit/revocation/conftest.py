"""One throwaway PKI per key type for the whole session, and a delegated OCSP responder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certctl.revocation import issue_responder_certificate
from tests.unit.revocation.support import Pki, make_pki, pem, real_now


@dataclass(frozen=True)
class Responder:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem_path: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-p256"))


@pytest.fixture(scope="session")
def p384_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-p384"), "ecdsa-p384")


@pytest.fixture(scope="session")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-rsa"), "rsa-2048")


@pytest.fixture(scope="session")
def responder(pki: Pki) -> Responder:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_responder_certificate(pki.issuer_cert, pki.issuer_key, key, now=real_now())
    path = pki.directory / "responder.pem"
    path.write_bytes(pem(cert))
    return Responder(cert, key, path)
