from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl.revocation import issue_responder_certificate, needs_rotation
from tests.unit.revocation.conftest import Responder
from tests.unit.revocation.support import Pki, openssl, pem, pkilint, real_now, write

# pkilint's CA/B BR OCSP responder profile applies the CA naming rules (BR §7.1.2.10.2), which
# make countryName a MUST. A private CA has no country to state (the CA's own names carry
# none either), so this one finding is expected; the RFC 5280 linter has nothing to say.
CABF_ONLY_FINDING = ("ERROR", "cabf.serverauth.ca.country_attribute_absent")


def test_profile_of_a_delegated_responder(pki: Pki, responder: Responder) -> None:
    cert = responder.cert
    extensions = {ext.oid: ext for ext in cert.extensions}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert not eku.critical
    nocheck = cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert not nocheck.critical
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.key_encipherment)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(responder.key.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == pki.issuer.ski
    assert len(extensions) == 6
    cert.verify_directly_issued_by(pki.issuer_cert)
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "certctl Issuing CA 1 OCSP Responder"


def test_validity_is_thirty_days_from_an_hour_ago(pki: Pki) -> None:
    now = real_now().replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_responder_certificate(pki.issuer_cert, pki.issuer_key, key, now=now)
    assert cert.not_valid_before_utc == max(
        now - timedelta(hours=1), pki.issuer_cert.not_valid_before_utc
    )
    assert cert.not_valid_after_utc == now + timedelta(days=30)


def test_validity_never_outlasts_the_issuer(pki: Pki) -> None:
    late = pki.issuer_cert.not_valid_after_utc - timedelta(days=3)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_responder_certificate(pki.issuer_cert, pki.issuer_key, key, now=late)
    assert cert.not_valid_after_utc == pki.issuer_cert.not_valid_after_utc
    with pytest.raises(ValueError, match="expires"):
        issue_responder_certificate(
            pki.issuer_cert, pki.issuer_key, key, now=pki.issuer_cert.not_valid_after_utc
        )


def test_openssl_accepts_it_for_ocsp_signing(
    pki: Pki, responder: Responder, tmp_path: Path
) -> None:
    root = write(tmp_path / "root.pem", pki.ca.root_pem.encode())
    output = openssl(
        "verify", "-x509_strict", "-purpose", "ocsphelper", "-CAfile", root,
        "-untrusted", pki.issuer_pem, responder.pem_path,
    )  # fmt: skip
    assert "OK" in output


def test_pkilint(responder: Responder) -> None:
    assert pkilint("lint_pkix_cert", responder.pem_path) == []
    cabf = pkilint("lint_cabf_serverauth_cert", "-t", "OCSP-RESPONDER", responder.pem_path)
    assert set(cabf) <= {CABF_ONLY_FINDING}


def test_rsa_issuer(rsa_pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = issue_responder_certificate(rsa_pki.issuer_cert, rsa_pki.issuer_key, key, now=real_now())
    cert.verify_directly_issued_by(rsa_pki.issuer_cert)
    assert pkilint("lint_pkix_cert", write(tmp_path / "r.pem", pem(cert))) == []


def test_refuses_bad_input(pki: Pki, p384_pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = real_now()
    with pytest.raises(ValueError, match="does not match"):
        issue_responder_certificate(pki.issuer_cert, p384_pki.issuer_key, key, now=now)
    with pytest.raises(ValueError, match="differ from the CA key"):
        issue_responder_certificate(pki.issuer_cert, pki.issuer_key, pki.issuer_key, now=now)
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_responder_certificate(
            pki.issuer_cert, pki.issuer_key, key, now=now.replace(tzinfo=None)
        )
    with pytest.raises(ValueError, match="positive"):
        issue_responder_certificate(
            pki.issuer_cert, pki.issuer_key, key, now=now, lifetime=timedelta(0)
        )


def test_needs_rotation_a_week_before_expiry(responder: Responder) -> None:
    end = responder.cert.not_valid_after_utc
    assert not needs_rotation(responder.cert, real_now())
    assert not needs_rotation(responder.cert, end - timedelta(days=7, seconds=1))
    assert needs_rotation(responder.cert, end - timedelta(days=7))
    assert needs_rotation(responder.cert, end + timedelta(days=1))
    assert not needs_rotation(responder.cert, end - timedelta(days=2), before=timedelta(days=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        needs_rotation(responder.cert, datetime(2026, 1, 1))


def test_needs_rotation_compares_instants_not_wall_clocks(responder: Responder) -> None:
    end = responder.cert.not_valid_after_utc
    elsewhere = (end - timedelta(days=7)).astimezone(datetime.now(UTC).astimezone().tzinfo)
    assert needs_rotation(responder.cert, elsewhere)
