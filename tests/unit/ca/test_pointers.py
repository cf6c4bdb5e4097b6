"""Revocation pointers in leaves: CRL distribution point and OCSP URL, exactly as asked."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from certctl.ca import LintError, LocalCA
from certctl.ca.lint import lint_leaf
from tests.unit.ca.helpers import make_request

CRL = "http://pki.example/.well-known/pki/crl/iss-1"
OCSP = "http://pki.example/.well-known/pki/ocsp/iss-1"


def test_pointers_are_emitted(local_ca: LocalCA) -> None:
    cert = local_ca.default_issuer.issue(make_request(crl_url=CRL, ocsp_url=OCSP)).certificate
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not cdp.critical  # RFC 5280 §4.2.1.13: SHOULD be non-critical
    [point] = cdp.value
    assert point.full_name == [x509.UniformResourceIdentifier(CRL)]
    assert point.relative_name is None and point.reasons is None and point.crl_issuer is None
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert not aia.critical  # RFC 5280 §4.2.2.1: MUST be non-critical
    assert [(d.access_method, d.access_location) for d in aia.value] == [
        (AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP))
    ]


def test_no_pointers_unless_asked(local_ca: LocalCA) -> None:
    cert = local_ca.default_issuer.issue(make_request()).certificate
    for kind in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(kind)


def test_must_staple_with_pointers(local_ca: LocalCA) -> None:
    request = make_request(crl_url=CRL, ocsp_url=OCSP, must_staple=True)
    cert = local_ca.default_issuer.issue(request).certificate
    feature = cert.extensions.get_extension_for_class(x509.TLSFeature)
    assert list(feature.value) == [x509.TLSFeatureType.status_request]  # RFC 7633
    assert not feature.critical


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"crl_url": CRL + "x"}, "CRL distribution point does not match the request"),
        ({"crl_url": None}, "CRL distribution point does not match the request"),
        ({"ocsp_url": OCSP + "x"}, "OCSP URL does not match the request"),
        ({"ocsp_url": None}, "OCSP URL does not match the request"),
    ],
)
def test_lint_catches_pointers_that_differ(
    local_ca: LocalCA, changes: dict[str, object], problem: str
) -> None:
    request = make_request(crl_url=CRL, ocsp_url=OCSP)
    cert = local_ca.default_issuer.issue(request).certificate
    changed = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
    with pytest.raises(LintError) as caught:
        lint_leaf(cert, changed, local_ca.default_issuer.certificate, request.csr.public_key())
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("url", ["ldap://pki.example/crl", "pki.example/crl", ""])
def test_pointers_must_be_http_urls(url: str) -> None:
    with pytest.raises(ValueError):
        make_request(crl_url=url)
    with pytest.raises(ValueError):
        make_request(ocsp_url=url)
