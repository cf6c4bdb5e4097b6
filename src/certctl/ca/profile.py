"""What the CA is asked to issue, what it hands back, and the leaf certificate template.

The registration authority decides *what* goes into a certificate (names, validity, EKUs,
serial); this module turns that decision into an RFC 5280 certificate template. It does not
sign: ``certctl.ca.issuer`` signs and ``certctl.ca.lint`` checks the result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.serials import SERIAL_BITS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EKU_OIDS: dict[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
}

# RFC 5280 Appendix A.1: ub-common-name INTEGER ::= 64.
MAX_COMMON_NAME = 64
# CA/B BR §7.1: serials carry at least 64 bits of CSPRNG output; one with fewer significant
# bits than that did not come from ``new_serial`` (odds 2**-95).
MIN_SERIAL_BITS = 64


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    """One certificate to issue. The CA takes only the public key from ``csr``: the RA has
    already checked the CSR's names against the order (RFC 8555 §7.4)."""

    csr: x509.CertificateSigningRequest
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...] = ()
    not_before: datetime
    not_after: datetime
    ekus: tuple[str, ...] = ("serverAuth",)
    must_staple: bool = False
    serial: int
    # Where relying parties check revocation; None leaves the extension out. The CRL URL
    # must equal the CRL's issuingDistributionPoint byte for byte (RFC 5280 §5.2.5).
    crl_url: str | None = None
    ocsp_url: str | None = None

    def __post_init__(self) -> None:
        if not self.dns_names and not self.ip_addresses:
            raise ValueError("a certificate needs at least one identifier")
        for moment in (self.not_before, self.not_after):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError("validity bounds must be timezone-aware")
        if self.not_before >= self.not_after:
            raise ValueError("not_before must precede not_after")
        if not self.ekus or any(name not in EKU_OIDS for name in self.ekus):
            raise ValueError(f"ekus must be a non-empty subset of {sorted(EKU_OIDS)}")
        check_serial(self.serial)
        for url in (self.crl_url, self.ocsp_url):
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError("revocation pointers must be http(s) URLs")


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed, linted leaf. ``chain_pem`` is the leaf followed by its issuer, without the
    root: the RFC 8555 §7.4.2 ``application/pem-certificate-chain`` download."""

    serial_hex: str
    certificate: x509.Certificate = field(repr=False)
    leaf_pem: str = field(repr=False)
    chain_pem: str = field(repr=False)
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    key_algorithm: str
    key_size: int


def check_serial(serial: int) -> None:
    """RFC 5280 §4.1.2.2: positive, at most 20 octets; we also keep it below 2**159."""
    if not 0 < serial < 2**SERIAL_BITS:
        raise ValueError("serial out of range")
    if serial.bit_length() < MIN_SERIAL_BITS:
        raise ValueError("serial has too little entropy")


def key_info(public_key: CertificatePublicKeyTypes) -> tuple[str, int]:
    """``(algorithm, size in bits)`` of a subject public key, e.g. ``("ECDSA", 256)``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA", public_key.curve.key_size
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "unsupported public key algorithm")


def aware_now(clock: Callable[[], datetime]) -> datetime:
    """``clock()``, refusing a naive datetime: every time in certctl is timezone-aware UTC."""
    now = clock()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the clock must return timezone-aware datetimes")
    return now


def whole_seconds(moment: datetime) -> datetime:
    """RFC 5280 §4.1.2.5.1/.2: validity is encoded to the second; drop the fraction up front so
    the certificate says exactly what was asked."""
    return moment.astimezone(UTC).replace(microsecond=0)


def leaf_subject(dns_names: tuple[str, ...]) -> x509.Name:
    """CN = the first DNS name that fits in one (clients and openssl still like a CN), else
    empty: RFC 5280 §4.1.2.6 allows an empty subject when the identity is in a critical
    SAN. Every name is in the SAN either way (CA/B BR §7.1.4.3: a CN repeats one of them)."""
    fitting = next((name for name in dns_names if len(name) <= MAX_COMMON_NAME), None)
    if fitting is not None:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fitting)])
    return x509.Name([])


def subject_alt_name(request: IssueRequest) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(request.dns_names)]
    names += [x509.IPAddress(ip) for ip in dict.fromkeys(request.ip_addresses)]
    return x509.SubjectAlternativeName(names)


def leaf_key_usage(public_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    """RFC 5280 §4.2.1.3: digitalSignature for every TLS key; keyEncipherment only for RSA,
    whose keys can still be used for RSA key transport (TLS 1.2 RSA kx)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def build_leaf(
    request: IssueRequest,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Certificate,
    issuer_ski: x509.SubjectKeyIdentifier,
) -> x509.CertificateBuilder:
    """The to-be-signed leaf for ``request``, issued by ``issuer``."""
    subject = leaf_subject(request.dns_names)
    ekus = [EKU_OIDS[name] for name in dict.fromkeys(request.ekus)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)  # RFC 5280 §4.1.2.4: byte-identical to the issuer's subject
        .public_key(public_key)
        .serial_number(request.serial)
        .not_valid_before(whole_seconds(request.not_before))
        .not_valid_after(whole_seconds(request.not_after))
        # RFC 5280 §4.2.1.6: SAN MUST be critical when the subject is empty.
        .add_extension(subject_alt_name(request), critical=len(subject) == 0)
        .add_extension(leaf_key_usage(public_key), critical=True)
        # RFC 5280 §4.2.1.12: EKU may be either; non-critical as the CA/B BR require.
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        # RFC 5280 §4.2.1.9: marking CA:FALSE critical keeps strict verifiers from guessing.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # RFC 5280 §4.2.1.2 (SHOULD for end entities) and §4.2.1.1 (MUST, except self-signed).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    if request.crl_url is not None:
        builder = builder.add_extension(crl_distribution_points(request.crl_url), critical=False)
    if request.ocsp_url is not None:
        builder = builder.add_extension(authority_info_access(request.ocsp_url), critical=False)
    if request.must_staple:
        # RFC 7633 §4: TLS Feature status_request ("OCSP must-staple"), non-critical.
        builder = builder.add_extension(
            x509.TLSFeature([x509.TLSFeatureType.status_request]), critical=False
        )
    return builder


def crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """RFC 5280 §4.2.1.13, non-critical: one point, a fullName URI, no reasons, no
    cRLIssuer (the issuer signs its own CRL)."""
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return x509.CRLDistributionPoints([point])


def authority_info_access(ocsp_url: str) -> x509.AuthorityInformationAccess:
    """RFC 5280 §4.2.2.1, non-critical: the OCSP responder (RFC 6960 §3.1 id-ad-ocsp)."""
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        ]
    )
