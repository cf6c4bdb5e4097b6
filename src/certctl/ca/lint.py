"""Pre-issuance lint: does the signed leaf say exactly what was asked, and is it well-formed?

Boulder lints every certificate before it leaves the CA (prepare -> lint -> sign). We sign in
memory, run these checks, and hand the certificate out only if none fails, so a certificate
that fails never reaches storage or a client. The checks are ours, not a general linter's:
they cover what pkilint does not (request fidelity, serial entropy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtensionOID,
    NameOID,
    PublicKeyAlgorithmOID,
    SignatureAlgorithmOID,
)

from certctl.ca.profile import IssueRequest, check_serial, whole_seconds

Check = Callable[["_Leaf", IssueRequest, x509.Certificate], Iterator[str]]


class LintError(Exception):
    """A certificate the CA built failed its own checks: a bug, never the client's fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def lint_leaf(
    cert: x509.Certificate,
    request: IssueRequest,
    issuer: x509.Certificate,
    public_key: CertificatePublicKeyTypes,
) -> None:
    """Raise ``LintError`` listing every problem found in ``cert``."""
    leaf = _Leaf(cert)
    problems = [p for check in _CHECKS for p in check(leaf, request, issuer)]
    # Key equality (the library compares the keys themselves): two DER encodings less.
    if cert.public_key() != public_key:
        problems.append("subject public key differs from the CSR's")
    if problems:
        raise LintError(problems)


def spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class _Leaf:
    """The certificate's parts the checks read, each taken from it once."""

    __slots__ = ("cert", "extensions", "subject")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.subject = cert.subject
        self.extensions = {ext.oid: ext for ext in cert.extensions}

    def value(self, oid: x509.ObjectIdentifier) -> Any:
        ext = self.extensions.get(oid)
        return None if ext is None else ext.value


def _serial(leaf: _Leaf, request: IssueRequest, _: x509.Certificate) -> Iterator[str]:
    serial = leaf.cert.serial_number
    if serial != request.serial:
        yield "serial differs from the request"
    try:
        check_serial(serial)  # RFC 5280 §4.1.2.2
    except ValueError as exc:
        yield str(exc)


def _validity(leaf: _Leaf, request: IssueRequest, issuer: x509.Certificate) -> Iterator[str]:
    start, end = leaf.cert.not_valid_before_utc, leaf.cert.not_valid_after_utc
    if not whole_seconds(request.not_before) <= start < end <= request.not_after:
        yield "validity outside the requested window"
    # RFC 5280 §6.1.3 (a)(2): a path is only valid while every certificate in it is.
    if start < issuer.not_valid_before_utc or end > issuer.not_valid_after_utc:
        yield "validity outside the issuer's"


def _names(leaf: _Leaf, request: IssueRequest, _: x509.Certificate) -> Iterator[str]:
    ext = leaf.extensions.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None:
        yield "subjectAltName missing"
        return
    dns_names: set[str] = set()
    ip_addresses: set[object] = set()
    for name in ext.value:
        if isinstance(name, x509.DNSName):
            dns_names.add(name.value)
        elif isinstance(name, x509.IPAddress):
            ip_addresses.add(name.value)
    if dns_names != set(request.dns_names):
        yield "SAN DNS names differ from the request"
    if ip_addresses != set(request.ip_addresses):
        yield "SAN IP addresses differ from the request"
    # RFC 5280 §4.2.1.6: critical if and only if the subject is empty.
    if ext.critical != (len(leaf.subject) == 0):
        yield "SAN criticality does not match the subject"
    for cn in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if cn.value not in request.dns_names:  # CA/B BR §7.1.4.3: CN must come from the SAN
            yield "commonName is not one of the SAN names"


def _constraints(leaf: _Leaf, request: IssueRequest, _: x509.Certificate) -> Iterator[str]:
    if leaf.cert.version is not x509.Version.v3:
        yield "not an X.509 v3 certificate"
    basic = leaf.value(ExtensionOID.BASIC_CONSTRAINTS)
    if basic is None or basic.ca:
        yield "leaf is not marked CA:FALSE"
    stapled = ExtensionOID.TLS_FEATURE in leaf.extensions
    if stapled != request.must_staple:
        yield "TLS Feature (must-staple) does not match the request"


def _pointers(leaf: _Leaf, request: IssueRequest, _: x509.Certificate) -> Iterator[str]:
    """The revocation pointers are exactly the requested URLs: a CRL URL that differs from
    the CRL's issuingDistributionPoint makes every CRL check fail (RFC 5280 §6.3.3 (b))."""
    crl_urls = [
        name.value
        for point in leaf.value(ExtensionOID.CRL_DISTRIBUTION_POINTS) or []
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier)
    ]
    if crl_urls != ([request.crl_url] if request.crl_url else []):
        yield "CRL distribution point does not match the request"
    ocsp_urls = [
        d.access_location.value
        for d in leaf.value(ExtensionOID.AUTHORITY_INFORMATION_ACCESS) or []
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    if ocsp_urls != ([request.ocsp_url] if request.ocsp_url else []):
        yield "OCSP URL does not match the request"


def _issuer(leaf: _Leaf, _: IssueRequest, issuer: x509.Certificate) -> Iterator[str]:
    """The leaf names its issuer as a path builder will look for it (RFC 5280 §6.1.3 (a)(4):
    issuer name equals the issuer's subject; §4.2.1.1: AKI equals its SKI), signed with
    an algorithm of the issuer's key type.

    The signature itself is not verified again here: ``Issuer`` holds a key only after
    checking it is the key of its certificate, and OpenSSL checks its own RSA-CRT results
    (the fault that makes post-signing verification worth its cost elsewhere). One
    signature verification was a tenth of an issuance's instructions."""
    cert = leaf.cert
    if cert.issuer != issuer.subject:
        yield "issuer name is not the issuer's subject"
    if _key_family(cert.signature_algorithm_oid) != _key_family(issuer.public_key_algorithm_oid):
        yield "signature algorithm does not fit the issuer's key"
    aki = leaf.value(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = None
    if aki is None or ski is None:
        yield "key identifiers missing"
        return
    # RFC 5280 §4.2.1.1: the AKI keyIdentifier is the issuer's SKI.
    if aki.key_identifier != ski.digest:
        yield "authorityKeyIdentifier does not match the issuer"


def _key_family(oid: x509.ObjectIdentifier) -> str:
    """ "ec", "rsa" or the dotted OID, for a signature or a public key algorithm."""
    if oid in _EC_OIDS:
        return "ec"
    if oid in _RSA_OIDS:
        return "rsa"
    return oid.dotted_string


_EC_OIDS = frozenset(
    {
        PublicKeyAlgorithmOID.EC_PUBLIC_KEY,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)
_RSA_OIDS = frozenset(
    {
        PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5,
        PublicKeyAlgorithmOID.RSASSA_PSS,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS,
    }
)

_CHECKS: tuple[Check, ...] = (_serial, _validity, _names, _constraints, _pointers, _issuer)
