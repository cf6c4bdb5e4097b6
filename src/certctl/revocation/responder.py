"""The delegated OCSP responder certificate (RFC 6960 §4.2.2.2).

Each issuing CA signs a short-lived certificate for a separate responder key, so the CA key
signs once a month instead of once per OCSP response. The certificate carries
id-kp-OCSPSigning and id-pkix-ocsp-nocheck, and is rotated a week before it expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl.domain.serials import new_serial
from certctl.revocation._signing import (
    PrivateKey,
    key_identifier,
    require_key_of,
    signature_hash,
    spki,
    utc_seconds,
)

RESPONDER_LIFETIME = timedelta(days=30)
ROTATE_BEFORE = timedelta(days=7)
# Backdate a little so a relying party whose clock lags still accepts a fresh responder.
BACKDATE = timedelta(hours=1)
_NAME_LIMIT = 64  # RFC 5280 Appendix A.1: ub-common-name


def issue_responder_certificate(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    responder_key: PrivateKey,
    *,
    now: datetime,
    lifetime: timedelta = RESPONDER_LIFETIME,
) -> x509.Certificate:
    """A responder certificate for ``responder_key``, signed by the issuing CA.

    Its validity starts an hour before ``now`` and never outlasts the issuer's.
    """
    require_key_of(issuer_cert, issuer_key, "issuer")
    public_key = responder_key.public_key()
    if spki(public_key) == spki(issuer_key.public_key()):
        raise ValueError("the responder key must differ from the CA key")
    if lifetime <= timedelta(0):
        raise ValueError("lifetime must be positive")
    moment = utc_seconds(now, "now")
    start = max(moment - BACKDATE, issuer_cert.not_valid_before_utc)
    end = min(moment + lifetime, issuer_cert.not_valid_after_utc)
    if end <= moment:
        raise ValueError("the issuer expires before the responder certificate would start")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_responder_name(issuer_cert.subject))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        # RFC 5280 §4.2.1.9: an end entity; critical so no verifier guesses.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # RFC 5280 §4.2.1.3: the key only signs OCSP responses.
        .add_extension(_digital_signature_only(), critical=True)
        # RFC 6960 §4.2.2.2: a delegated responder MUST carry id-kp-OCSPSigning in EKU;
        # non-critical, as the CA/B BR OCSP responder profile (§7.1.2.8) asks.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        # RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck, NULL value; "SHOULD be non-critical".
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                key_identifier(issuer_cert)
            ),
            critical=False,
        )
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))


def needs_rotation(
    cert: x509.Certificate, now: datetime, *, before: timedelta = ROTATE_BEFORE
) -> bool:
    """True once ``now`` is within ``before`` of the certificate's expiry (or past it)."""
    return utc_seconds(now, "now") >= cert.not_valid_after_utc - before


def _responder_name(issuer: x509.Name) -> x509.Name:
    """The issuer's name with its common name replaced by "<issuer CN> OCSP Responder"."""
    common_names = issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(common_names[0].value) if common_names else "certctl"
    common_name = f"{base} OCSP Responder"
    if len(common_name) > _NAME_LIMIT:
        common_name = "OCSP Responder"
    attributes = [a for a in issuer if a.oid != NameOID.COMMON_NAME]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _digital_signature_only() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
