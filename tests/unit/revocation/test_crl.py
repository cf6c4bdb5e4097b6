from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

from certctl.domain.serials import new_serial
from certctl.revocation import RevocationReason, RevokedEntry, build_crl
from tests.unit.revocation.support import (
    Pki,
    issuer_public_key,
    openssl,
    openssl_result,
    pem,
    pkilint,
    real_now,
    write,
)

IDP_URL = "http://pki.example.test/crl/issuer-1"
# Every reason a full CRL may carry (removeFromCRL belongs to delta CRLs only).
CRL_REASONS = [r for r in RevocationReason if r is not RevocationReason.REMOVE_FROM_CRL]
# The CA/B BR CRL profile (§7.2.2) allows only these on subscriber entries, with
# unspecified expressed by omitting the extension.
BR_REASONS = [
    None,
    RevocationReason.UNSPECIFIED,
    RevocationReason.KEY_COMPROMISE,
    RevocationReason.AFFILIATION_CHANGED,
    RevocationReason.SUPERSEDED,
    RevocationReason.CESSATION_OF_OPERATION,
    RevocationReason.PRIVILEGE_WITHDRAWN,
]


def _crl(
    pki: Pki,
    entries: list[RevokedEntry],
    *,
    number: int = 1,
    idp_url: str | None = IDP_URL,
    now: datetime | None = None,
) -> bytes:
    start = now if now is not None else real_now()
    return build_crl(
        issuer_cert=pki.issuer_cert,
        issuer_key=pki.issuer_key,
        crl_number=number,
        this_update=start,
        next_update=start + timedelta(days=1),
        entries=entries,
        idp_url=idp_url,
    )


def _openssl_text(pki: Pki, path: Path) -> str:
    return openssl(
        "crl", "-inform", "DER", "-in", path, "-CAfile", pki.chain_pem, "-noout", "-text"
    )


def test_openssl_verifies_and_lists_the_revoked_leaf_with_its_reason(
    pki: Pki, tmp_path: Path
) -> None:
    leaf = pki.issue_leaf()
    now = real_now()
    entries = [
        RevokedEntry(leaf.serial_number, now, RevocationReason.KEY_COMPROMISE),
        RevokedEntry(new_serial(), now, None),
    ]
    text = _openssl_text(pki, write(tmp_path / "crl.der", _crl(pki, entries, number=7)))
    assert "verify OK" in text
    assert re.search(r"CRL Number:\s*\n\s*7\b", text), text
    serial = format(leaf.serial_number, "X")
    serial = serial.rjust(len(serial) + len(serial) % 2, "0")  # openssl prints whole octets
    block = text.split(f"Serial Number: {serial}")[1].split("Serial Number:")[0]
    assert "Key Compromise" in block
    assert "Issuing Distribution Point: critical" in text
    assert f"URI:{IDP_URL}" in text
    assert "Only User Certificates" in text


@pytest.mark.parametrize(
    ("idp_url", "leaf_crldp", "expected"),
    [
        (None, None, "certificate revoked"),
        (IDP_URL, IDP_URL, "certificate revoked"),
        # RFC 5280 §6.3.3 (b)(2): a CRL with an IDP only covers certificates whose CRLDP
        # names it. Leaves must carry the same URL once the CRL is published with one.
        (IDP_URL, None, "different CRL scope"),
    ],
)
def test_openssl_crl_check_sees_the_revocation(
    pki: Pki, tmp_path: Path, idp_url: str | None, leaf_crldp: str | None, expected: str
) -> None:
    leaf = (
        pki.issue_leaf() if leaf_crldp is None else pki.leaf_with_crl_distribution_point(leaf_crldp)
    )
    entry = RevokedEntry(leaf.serial_number, real_now(), RevocationReason.SUPERSEDED)
    crl_der = write(tmp_path / "crl.der", _crl(pki, [entry], idp_url=idp_url))
    crl_pem = tmp_path / "crl.pem"
    openssl("crl", "-inform", "DER", "-in", crl_der, "-out", crl_pem)
    leaf_pem = write(tmp_path / "leaf.pem", pem(leaf))
    returncode, output = openssl_result(
        "verify", "-crl_check", "-CAfile", pki.chain_pem, "-CRLfile", crl_pem, leaf_pem
    )
    assert returncode != 0
    assert expected in output, output


def test_extensions_as_rfc_5280_asks(pki: Pki) -> None:
    crl = x509.load_der_x509_crl(_crl(pki, []))
    assert crl.issuer == pki.issuer_cert.subject
    assert crl.is_signature_valid(issuer_public_key(pki))
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == pki.issuer.ski
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical and number.value.crl_number == 1
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.full_name == [x509.UniformResourceIdentifier(IDP_URL)]
    assert idp.value.only_contains_user_certs
    assert not idp.value.only_contains_ca_certs and not idp.value.indirect_crl
    assert crl.next_update_utc is not None and crl.next_update_utc > crl.last_update_utc


def test_without_a_url_there_is_no_issuing_distribution_point(pki: Pki) -> None:
    crl = x509.load_der_x509_crl(_crl(pki, [], idp_url=None))
    oids = {ext.oid for ext in crl.extensions}
    assert oids == {ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_NUMBER}


def test_empty_crl_verifies(pki: Pki, tmp_path: Path) -> None:
    text = _openssl_text(pki, write(tmp_path / "empty.der", _crl(pki, [])))
    assert "verify OK" in text
    assert "No Revoked Certificates." in text


def test_crl_number_follows_the_caller(pki: Pki, tmp_path: Path) -> None:
    numbers = []
    for number in (1, 2, 2**64):
        path = write(tmp_path / f"crl-{number}.der", _crl(pki, [], number=number))
        assert "verify OK" in _openssl_text(pki, path)
        crl = x509.load_der_x509_crl(path.read_bytes())
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers == [1, 2, 2**64]


@pytest.mark.parametrize("reason", [*CRL_REASONS, None])
def test_reason_code_extension_only_when_specified(
    pki: Pki, reason: RevocationReason | None
) -> None:
    revoked_at = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    serial = new_serial()
    crl = x509.load_der_x509_crl(_crl(pki, [RevokedEntry(serial, revoked_at, reason)]))
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.revocation_date_utc == revoked_at.replace(microsecond=0)
    reasons = [e.value for e in entry.extensions if isinstance(e.value, x509.CRLReason)]
    if reason is None or reason is RevocationReason.UNSPECIFIED:
        assert reasons == []  # RFC 5280 §5.3.1: omit rather than say unspecified
    else:
        assert [r.reason for r in reasons] == [reason.flag]


@pytest.mark.parametrize("fixture", ["p384_pki", "rsa_pki"])
def test_digest_follows_the_issuer_key(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    other: Pki = request.getfixturevalue(fixture)
    der = _crl(other, [RevokedEntry(new_serial(), real_now(), None)])
    crl = x509.load_der_x509_crl(der)
    expected = hashes.SHA384 if fixture == "p384_pki" else hashes.SHA256
    assert isinstance(crl.signature_hash_algorithm, expected)
    assert "verify OK" in _openssl_text(other, write(tmp_path / "crl.der", der))


def test_pkilint_pkix_profile_is_clean_with_every_reason(pki: Pki, tmp_path: Path) -> None:
    now = real_now()
    entries = [RevokedEntry(new_serial(), now, reason) for reason in [*CRL_REASONS, None]]
    path = write(tmp_path / "crl.der", _crl(pki, entries))
    assert pkilint("lint_crl", "-t", "CRL", "-p", "PKIX", path) == []


def test_pkilint_br_profile_is_clean_with_subscriber_reasons(pki: Pki, tmp_path: Path) -> None:
    now = real_now()
    entries = [RevokedEntry(new_serial(), now, reason) for reason in BR_REASONS]
    path = write(tmp_path / "crl.der", _crl(pki, entries))
    assert pkilint("lint_crl", "-t", "CRL", "-p", "BR", path) == []


def test_hundred_thousand_entries(pki: Pki) -> None:
    now = real_now()
    entries = [
        RevokedEntry(new_serial(), now - timedelta(seconds=i), CRL_REASONS[i % len(CRL_REASONS)])
        for i in range(100_000)
    ]
    started = time.perf_counter()
    der = _crl(pki, entries)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"building took {elapsed:.2f} s"  # about 1 s on an idle machine
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 100_000
    assert crl.is_signature_valid(issuer_public_key(pki))
    probe = entries[54_321]
    found = crl.get_revoked_certificate_by_serial_number(probe.serial)
    assert found is not None
    assert found.revocation_date_utc == probe.revoked_at.replace(microsecond=0)


def test_refuses_a_key_that_is_not_the_issuers(pki: Pki, p384_pki: Pki) -> None:
    with pytest.raises(ValueError, match="does not match"):
        build_crl(
            issuer_cert=pki.issuer_cert,
            issuer_key=p384_pki.issuer_key,
            crl_number=1,
            this_update=real_now(),
            next_update=real_now() + timedelta(days=1),
            entries=[],
            idp_url=None,
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crl_number": -1}, "crl_number"),
        ({"crl_number": 2**159}, "crl_number"),
        ({"this_update": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"next_update": datetime(2020, 1, 1, tzinfo=UTC)}, "after this_update"),
        ({"idp_url": "ldap://pki.example.test/crl"}, "http"),
        ({"entries": [RevokedEntry(5, datetime(2026, 1, 1), None)]}, "timezone-aware"),
        (
            {"entries": [RevokedEntry(7, datetime(2026, 1, 1, tzinfo=UTC), None)] * 2},
            "listed twice",
        ),
        (
            {
                "entries": [
                    RevokedEntry(
                        7, datetime(2026, 1, 1, tzinfo=UTC), RevocationReason.REMOVE_FROM_CRL
                    )
                ]
            },
            "removeFromCRL",
        ),
        ({"entries": [RevokedEntry(0, datetime(2026, 1, 1, tzinfo=UTC), None)]}, "positive"),
    ],
)
def test_refuses_bad_input(pki: Pki, changes: dict[str, object], message: str) -> None:
    now = real_now()
    arguments: dict[str, object] = {
        "issuer_cert": pki.issuer_cert,
        "issuer_key": pki.issuer_key,
        "crl_number": 1,
        "this_update": now,
        "next_update": now + timedelta(days=1),
        "entries": [],
        "idp_url": IDP_URL,
    }
    with pytest.raises(ValueError, match=message):
        build_crl(**(arguments | changes))  # type: ignore[arg-type]
