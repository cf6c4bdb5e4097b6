"""Finalize and download (RFC 8555 §7.4, §7.4.2), then what the inventory and the metrics
say about the issuance. Refused finalizes must leave the order ``ready``."""

from __future__ import annotations

import hashlib
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.acme_lib import PEM_CHAIN, acme_client
from tests.integration.cli import cert_show, certctl_cli, count_rows, create_profile
from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_acme_headers,
    assert_problem,
    b64,
    csr_der,
    flattened,
    race,
)
from tests.support.gating import require_executable
from tests.support.server import ServedCertctl

EC_ONLY = "ec-only"
CONCURRENCY = 8


@pytest.fixture(scope="module")
def ec_wire(served: ServedCertctl) -> Iterator[Wire]:
    """A profile that allows only EC P-256 subscriber keys."""
    create_profile(served, EC_ONLY, "--key-algorithms", "EC-P256")
    client = Wire(served, f"/acme/profile/{EC_ONLY}/directory")
    yield client
    client.close()


def _status(wire: Wire, account: Account, order_url: str) -> str:
    status: str = wire.as_account(account, order_url).json()["status"]
    return status


def _tamper_signature(der: bytes) -> bytes:
    """Flip a bit in the last octet: inside the CSR's signature value."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


def _unknown_key_algorithm(der: bytes) -> bytes:
    """The key's algorithm (id-ecPublicKey, RFC 5480 §2.1.1) changed to an OID nobody
    implements, same length: still DER, but its key cannot be loaded."""
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    assert der.count(ec_public_key) == 1
    return der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209"))


# -- refused finalizes leave the order ready ---------------------------------------------


@pytest.mark.parametrize(
    "csr_names",
    [
        pytest.param(["a.fin.test", "b.fin.test", "c.fin.test"], id="extra-name"),
        pytest.param(["a.fin.test"], id="missing-name"),
        pytest.param(["x.fin.test", "y.fin.test"], id="other-names"),
        pytest.param(["a.fin.test", "*.fin.test"], id="wildcard-instead"),
    ],
)
def test_csr_names_must_equal_identifiers(wire: Wire, csr_names: list[str]) -> None:
    account = wire.new_account()
    order_url, order = wire.ready_order(account, "a.fin.test", "b.fin.test")
    cert_key = Key.ec256()
    response = wire.finalize(account, order, csr_der(cert_key, csr_names))
    assert_problem(response, 400, "badCSR", wire.directory_url)
    assert _status(wire, account, order_url) == "ready"
    # The same order, with the right CSR (names in another order and case), issues.
    csr = csr_der(cert_key, ["B.fin.test", "a.fin.test"], common_name=True)
    fixed = wire.finalize(account, order, csr)
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["status"] == "valid"


def test_csr_with_an_account_key_is_bad_csr(wire: Wire, ec_wire: Wire) -> None:
    account = wire.new_account()
    order_url, order = wire.ready_order(account, "acctkey.example.test")
    # RFC 8555 §11.1: neither its own account key nor any other account's (any profile).
    other_profile_account = ec_wire.new_account()
    for key in (account.key, wire.new_account().key, other_profile_account.key):
        response = wire.finalize(account, order, csr_der(key, ["acctkey.example.test"]))
        assert_problem(response, 400, "badCSR", wire.directory_url)
        assert _status(wire, account, order_url) == "ready"


@pytest.mark.parametrize("name", ["root-ca.pem", "issuing-ca-1.pem"])
def test_csr_with_a_ca_key_is_refused_and_the_order_stays_ready(
    served: ServedCertctl, wire: Wire, name: str
) -> None:
    """Refused with the other checks of client input, before the order is claimed: it
    stays ready, and no serial is spent on it. (The root's key was not refused at all.)"""
    pem = (served.data_dir / "ca" / "keys" / name).read_bytes()
    ca_key = Key(serialization.load_pem_private_key(pem, password=None))  # type: ignore[arg-type]
    account = wire.new_account()
    order_url, order = wire.ready_order(account, "cakey.example.test")
    response = wire.finalize(account, order, csr_der(ca_key, ["cakey.example.test"]))
    doc = assert_problem(response, 400, "badPublicKey", wire.directory_url)
    assert "CA" in doc["detail"]
    assert _status(wire, account, order_url) == "ready"
    allowed = wire.finalize(account, order, csr_der(Key.ec256(), ["cakey.example.test"]))
    assert allowed.status_code == 200, allowed.text


def test_csr_key_not_allowed_by_profile_is_bad_csr(ec_wire: Wire) -> None:
    account = ec_wire.new_account()
    order_url, order = ec_wire.ready_order(account, "ec.example.test")
    rsa_key = Key.rsa(2048)
    response = ec_wire.finalize(account, order, csr_der(rsa_key, ["ec.example.test"]))
    doc = assert_problem(response, 400, "badCSR", ec_wire.directory_url)
    assert "EC-P256" in doc["detail"]
    assert _status(ec_wire, account, order_url) == "ready"
    allowed = ec_wire.finalize(account, order, csr_der(Key.ec256(), ["ec.example.test"]))
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda der: b64(_tamper_signature(der)), id="bad-signature"),
        pytest.param(lambda der: b64(b"not a certificate request"), id="not-der"),
        pytest.param(lambda der: b64(der[:-20]), id="truncated"),
        pytest.param(lambda der: b64(der) + "==", id="padded-base64"),
        pytest.param(lambda der: b64(der).replace("-", "+").replace("_", "/") + "+/", id="b64-std"),
        pytest.param(lambda der: "!!!!", id="garbage"),
        pytest.param(lambda der: b64(_unknown_key_algorithm(der)), id="unknown-key-algorithm"),
    ],
)
def test_unusable_csr_is_bad_csr(wire: Wire, spoil: Callable[[bytes], str]) -> None:
    account = wire.new_account()
    order_url, order = wire.ready_order(account, "spoiled.example.test")
    der = csr_der(Key.ec256(), ["spoiled.example.test"])
    response = wire.as_account(account, order["finalize"], {"csr": spoil(der)})
    assert_problem(response, 400, "badCSR", wire.directory_url)
    assert _status(wire, account, order_url) == "ready"


def test_finalize_of_a_valid_order_is_order_not_ready(wire: Wire) -> None:
    account = wire.new_account()
    order_url, order, _ = wire.issue(account, "twice.example.test")
    certificate = order["certificate"]
    again = wire.finalize(account, order, csr_der(Key.ec256(), ["twice.example.test"]))
    assert_problem(again, 403, "orderNotReady", wire.directory_url)
    after = wire.as_account(account, order_url).json()
    assert (after["status"], after["certificate"]) == ("valid", certificate)


@pytest.mark.parametrize("csr", ["garbage", "bad-signature", "account-key"])
def test_finalize_of_a_valid_order_says_so_before_what_is_wrong_with_the_csr(
    wire: Wire, csr: str
) -> None:
    # The CSR's key is looked up with the order; the order's state is still reported first.
    account = wire.new_account()
    _, order, _ = wire.issue(account, "twice-bad.example.test")
    der = csr_der(Key.ec256(), ["twice-bad.example.test"])
    spoiled = {
        "garbage": "!!!!",
        "bad-signature": b64(_tamper_signature(der)),
        "account-key": b64(csr_der(account.key, ["twice-bad.example.test"])),
    }[csr]
    response = wire.as_account(account, order["finalize"], {"csr": spoiled})
    assert_problem(response, 403, "orderNotReady", wire.directory_url)


# -- download ------------------------------------------------------------------------


def test_certificate_download_verifies_against_the_root(
    served: ServedCertctl, wire: Wire, tmp_path: Path
) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    regr = client.register()
    names = ("dl.example.test", "www.dl.example.test")
    order, chain_pem, cert_key = client.issue(*names)
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    assert len(chain) == 2, "leaf then its issuer"
    leaf, issuer = chain
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert_key.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_path, issuer_path = tmp_path / "leaf.pem", tmp_path / "issuer.pem"
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    issuer_path.write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    openssl = require_executable("openssl", "apt-get install openssl")
    verified = subprocess.run(
        [
            openssl,
            "verify",
            "-CAfile",
            str(served.root_pem_path),
            "-untrusted",
            str(issuer_path),
            "-purpose",
            "sslserver",
            str(leaf_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": OK"), verified.stdout

    # Raw, for the headers: the chain's media type and the ACME headers.
    assert order.body.certificate is not None
    owner = Account(client.key, regr.uri)
    response = wire.as_account(owner, order.body.certificate)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PEM_CHAIN
    assert response.text == chain_pem
    assert_acme_headers(response, wire.directory_url)
    # Another account gets the same answer as for a certificate that does not exist.
    intruder = wire.new_account()
    stolen = wire.as_account(intruder, order.body.certificate)
    assert_problem(stolen, 404, "malformed", wire.directory_url)


# -- concurrency ---------------------------------------------------------------------


def test_concurrent_finalizes_issue_exactly_once(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    order_url, order = wire.ready_order(account, "race.example.test")
    order_id = order_url.rsplit("/", 1)[1]
    # Each request its own nonce and CSR, signed up front: only the order can collide.
    bodies = [
        flattened(
            account.key,
            wire.header(account.key, order["finalize"], kid=account.url),
            f'{{"csr": "{b64(csr_der(Key.ec256(), ["race.example.test"]))}"}}'.encode(),
        )
        for _ in range(CONCURRENCY)
    ]
    results = race(wire, order["finalize"], bodies)

    assert Counter(r.status_code for r in results) == {200: 1, 403: CONCURRENCY - 1}, [
        (r.status_code, r.text[:200]) for r in results
    ]
    for response in results:
        if response.status_code == 403:
            assert_problem(response, 403, "orderNotReady", wire.directory_url)
    (won,) = [r.json() for r in results if r.status_code == 200]
    assert won["status"] == "valid"
    assert _status(wire, account, order_url) == "valid"

    leaf = x509.load_pem_x509_certificates(wire.as_account(account, won["certificate"]).content)[0]
    serial = format(leaf.serial_number, "x")
    sql = "SELECT count(*) FROM certificate_versions WHERE acme_order_id = :order_id"
    assert count_rows(served, sql, order_id=order_id) == 1
    listed = certctl_cli(served, "cert", "list").split()
    assert listed.count(serial) == 1, serial


# -- inventory and metrics ----------------------------------------------------------


def test_cert_show_after_issuance(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    order_url, order, _ = wire.issue(account, "inv.example.test")
    chain = wire.as_account(account, order["certificate"]).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    serial = format(leaf.serial_number, "x")

    shown = cert_show(served, serial)
    profile = certctl_cli(served, "profile", "show", "default")
    assert shown["serial"] == serial
    assert shown["profile_id"] == "default"
    assert f'"issuer_id": "{shown["issuer_id"]}"' in profile
    assert shown["acme_account_id"] == account.id
    assert shown["acme_order_id"] == order_url.rsplit("/", 1)[1]
    assert (shown["key_algorithm"], shown["key_size"]) == ("ECDSA", 256)
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert shown["fingerprint_sha256"] == hashlib.sha256(der).hexdigest()
    assert shown["source"] == "acme"
    # Any serial spelling finds the same version.
    colon_serial = ":".join(f"{b:02X}" for b in leaf.serial_number.to_bytes(20, "big"))
    assert cert_show(served, colon_serial)["id"] == shown["id"]


def test_the_inventory_names_a_certificate_by_its_leafs_cn(
    served: ServedCertctl, wire: Wire
) -> None:
    """The first name in order is too long for a CN (64 octets): the leaf's CN is the next
    one, and the inventory says the same."""
    long_name, short_name = "a" * 60 + ".cn.example.test", "z.cn.example.test"
    account = wire.new_account()
    _, order, _ = wire.issue(account, long_name, short_name)
    chain = wire.as_account(account, order["certificate"]).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    assert cns == [short_name]
    version = cert_show(served, format(leaf.serial_number, "x"))
    named = "SELECT count(*) FROM managed_certificates WHERE id = :id AND common_name = :cn"
    assert count_rows(served, named, id=version["certificate_id"], cn=short_name) == 1


def _samples(
    served: ServedCertctl, wire: Wire
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = wire.http.get(served.base_url + "/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_the_flow(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    before = _samples(served, wire)
    wire.issue(account, "metrics.example.test")
    after = _samples(served, wire)

    def delta(name: str) -> float:
        return after[(name, ())] - before.get((name, ()), 0.0)

    assert after[("certctl_acme_new_order_total", ())] > 0
    assert after[("certctl_acme_finalize_order_total", ())] > 0
    assert delta("certctl_acme_new_order_total") == 1
    assert delta("certctl_acme_finalize_order_total") == 1
    finalize = (("endpoint", "finalize_order"),)
    assert after[("certctl_acme_request_duration_seconds_count", finalize)] >= 1
    assert ("certctl_acme_request_duration_seconds_sum", finalize) in after
    buckets = [
        labels
        for (name, labels) in after
        if name == "certctl_acme_request_duration_seconds_bucket"
        and ("endpoint", "new_order") in labels
    ]
    assert any(("le", "+Inf") in labels for labels in buckets), buckets
