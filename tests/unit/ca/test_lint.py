"""The pre-issuance lint catches a certificate that does not match what was asked."""

from __future__ import annotations

import dataclasses

import pytest

from certctl.ca import LintError, LocalCA
from certctl.ca.lint import lint_leaf
from certctl.domain.serials import new_serial
from tests.unit.ca.helpers import make_request


def _problems(ca: LocalCA, signer: LocalCA, **changes: object) -> list[str]:
    """Issue with ``signer``, then lint against ``ca``'s issuer and a changed request."""
    request = make_request()
    cert = signer.default_issuer.issue(request).certificate
    changed = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
    with pytest.raises(LintError) as caught:
        lint_leaf(cert, changed, ca.default_issuer.certificate, changed.csr.public_key())
    return caught.value.problems


def test_a_clean_leaf_passes(local_ca: LocalCA) -> None:
    request = make_request()
    cert = local_ca.default_issuer.issue(request).certificate
    lint_leaf(cert, request, local_ca.default_issuer.certificate, request.csr.public_key())


def test_names_that_differ(local_ca: LocalCA) -> None:
    problems = _problems(local_ca, local_ca, dns_names=("other.example",))
    assert "SAN DNS names differ from the request" in problems
    assert "commonName is not one of the SAN names" in problems


def test_must_staple_that_differs(local_ca: LocalCA) -> None:
    problems = _problems(local_ca, local_ca, must_staple=True)
    assert problems == ["TLS Feature (must-staple) does not match the request"]


def test_serial_that_differs(local_ca: LocalCA) -> None:
    assert _problems(local_ca, local_ca, serial=new_serial()) == ["serial differs from the request"]


def test_another_issuer_of_the_same_name(local_ca: LocalCA, p384_ca: LocalCA) -> None:
    # Both CAs call their issuer "certctl Issuing CA 1": the key identifiers tell them apart.
    assert _problems(local_ca, p384_ca) == ["authorityKeyIdentifier does not match the issuer"]


def test_an_issuer_of_another_key_type(local_ca: LocalCA, rsa_ca: LocalCA) -> None:
    problems = _problems(local_ca, rsa_ca)
    assert "signature algorithm does not fit the issuer's key" in problems
    assert "authorityKeyIdentifier does not match the issuer" in problems


def test_a_leaf_linted_against_the_root_does_not_name_it(local_ca: LocalCA) -> None:
    request = make_request()
    cert = local_ca.default_issuer.issue(request).certificate
    with pytest.raises(LintError) as caught:
        lint_leaf(cert, request, local_ca.root, request.csr.public_key())
    assert "issuer name is not the issuer's subject" in caught.value.problems


def test_another_public_key(local_ca: LocalCA) -> None:
    other = make_request()
    problems = _problems(local_ca, local_ca, csr=other.csr)
    assert problems == ["subject public key differs from the CSR's"]
