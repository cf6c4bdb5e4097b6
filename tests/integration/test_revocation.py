"""revoke-cert (RFC 8555 §7.6) on the default instance (trust_authenticated).

Who may revoke: the account that ordered the certificate (kid), an account holding valid
authorizations for every name in it (kid), or the certificate's own key (jwk). Reasons are
the subscriber's (0, 1, 3, 4, 5, 9). keyCompromise blocks the key for CSRs and accounts.
A refused request leaves the certificate active, which ``certctl cert show`` confirms.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.integration.acme_lib import acme_client
from tests.integration.cli import cert_show, certctl_cli, count_rows
from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_problem,
    b64,
    csr_der,
    flattened,
    payload_bytes,
)
from tests.support.server import ServedCertctl

URN = "urn:ietf:params:acme:error:"


def issue(wire: Wire, account: Account, *names: str) -> tuple[x509.Certificate, Key]:
    """(leaf, its key) for a whole issuance by ``account``."""
    _, order, cert_key = wire.issue(account, *names)
    chain = wire.as_account(account, order["certificate"]).content
    return x509.load_pem_x509_certificates(chain)[0], cert_key


def der_b64(cert: x509.Certificate) -> str:
    return b64(cert.public_bytes(serialization.Encoding.DER))


def revoke(
    wire: Wire,
    key: Key,
    cert: x509.Certificate,
    *,
    kid: str | None = None,
    **reason: Any,
) -> httpx.Response:
    """revoke-cert signed by ``key``: with ``kid`` as that account, else with the jwk."""
    payload = {"certificate": der_b64(cert)} | reason
    return wire.signed(key, wire["revokeCert"], payload, kid=kid)


def by_account(
    wire: Wire, account: Account, cert: x509.Certificate, **reason: Any
) -> httpx.Response:
    return revoke(wire, account.key, cert, kid=account.url, **reason)


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def shown(served: ServedCertctl, cert: x509.Certificate) -> dict[str, Any]:
    return cert_show(served, serial_hex(cert))


def assert_revoked(served: ServedCertctl, cert: x509.Certificate, reason: int) -> None:
    doc = shown(served, cert)
    assert doc["status"] == "revoked", doc
    assert doc["revocation_reason"] == reason, doc
    assert doc["revoked_at"], doc


def assert_active(served: ServedCertctl, cert: x509.Certificate) -> None:
    doc = shown(served, cert)
    assert doc["status"] == "active", doc
    assert doc["revocation_reason"] is None, doc


def assert_ok(response: httpx.Response) -> None:
    """RFC 8555 §7.6: 200 with an empty body (and a fresh nonce)."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers.get("Replay-Nonce")


def self_signed(key: Key, name: str, serial: int | None = None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.private.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key.private, hashes.SHA256())
    )


# -- who may revoke -------------------------------------------------------------------------


def test_issuing_account_revokes_with_the_acme_library(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    client.register()
    _, chain, _ = client.issue("lib-revoke.example.test")
    cert = x509.load_pem_x509_certificates(chain.encode())[0]
    assert_active(served, cert)

    client.acme.revoke(cert, 4)  # superseded
    assert_revoked(served, cert, 4)

    with pytest.raises(messages.Error) as again:
        client.acme.revoke(cert, 4)
    assert again.value.typ == URN + "alreadyRevoked"


def test_issuing_account_revokes_with_the_raw_client(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    cert, _ = issue(wire, account, "raw-revoke.example.test", "www.raw-revoke.example.test")
    assert_ok(by_account(wire, account, cert))  # no reason: unspecified (0)
    assert_revoked(served, cert, 0)


def test_account_holding_valid_authorizations_for_all_names_revokes(
    served: ServedCertctl, wire: Wire
) -> None:
    names = ("a.authz-revoke.example.test", "b.authz-revoke.example.test")
    issuer = wire.new_account()
    cert, _ = issue(wire, issuer, *names)
    # In trust_authenticated mode the other account's own order makes its authorizations
    # valid at once; it never finalizes.
    other = wire.new_account()
    wire.ready_order(other, *names)
    assert_ok(by_account(wire, other, cert, reason=5))
    assert_revoked(served, cert, 5)


def test_account_holding_a_wildcard_authorization_revokes(
    served: ServedCertctl, wire: Wire
) -> None:
    names = ("*.wild-revoke.example.test", "wild-revoke.example.test")
    cert, _ = issue(wire, wire.new_account(), *names)
    other = wire.new_account()
    # The plain name alone does not cover the wildcard ...
    wire.ready_order(other, names[1])
    assert_problem(by_account(wire, other, cert), 403, "unauthorized", wire.directory_url)
    # ... an authorization for the wildcard itself does.
    wire.ready_order(other, names[0])
    assert_ok(by_account(wire, other, cert, reason=9))
    assert_revoked(served, cert, 9)


def test_account_without_authorizations_is_unauthorized(served: ServedCertctl, wire: Wire) -> None:
    names = ("a.no-authz.example.test", "b.no-authz.example.test")
    issuer = wire.new_account()
    cert, _ = issue(wire, issuer, *names)

    stranger = wire.new_account()
    response = by_account(wire, stranger, cert)
    assert_problem(response, 403, "unauthorized", wire.directory_url)
    # Valid authorizations for only some of the names are not enough.
    partial = wire.new_account()
    wire.ready_order(partial, names[0])
    response = by_account(wire, partial, cert)
    assert_problem(response, 403, "unauthorized", wire.directory_url)
    # An order for other names under the same domain is not either.
    cousin = wire.new_account()
    wire.ready_order(cousin, "c.no-authz.example.test", "no-authz.example.test")
    response = by_account(wire, cousin, cert)
    assert_problem(response, 403, "unauthorized", wire.directory_url)
    assert_active(served, cert)


def test_certificate_key_revokes_with_jwk(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "jwk-revoke.example.test")
    response = revoke(wire, cert_key, cert, reason=3)
    assert_ok(response)
    assert_revoked(served, cert, 3)
    again = revoke(wire, cert_key, cert, reason=3)
    assert_problem(again, 400, "alreadyRevoked", wire.directory_url)


def test_jwk_of_an_unrelated_key_is_unauthorized(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    cert, _ = issue(wire, account, "jwk-stranger.example.test")
    for key in (Key.ec256(), Key.rsa(2048)):
        response = revoke(wire, key, cert)
        assert_problem(response, 403, "unauthorized", wire.directory_url)
    # Even the issuing account's key proves nothing when sent as a jwk: only the kid form
    # stands for the account.
    response = revoke(wire, account.key, cert)
    assert_problem(response, 403, "unauthorized", wire.directory_url)
    assert_active(served, cert)


# -- reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [0, 1, 3, 4, 5, 9])
def test_subscriber_reasons_are_accepted(served: ServedCertctl, wire: Wire, reason: int) -> None:
    account = wire.new_account()
    cert, _ = issue(wire, account, f"reason-{reason}.example.test")
    assert_ok(by_account(wire, account, cert, reason=reason))
    assert_revoked(served, cert, reason)


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param(2, id="cACompromise"),
        pytest.param(6, id="certificateHold"),
        pytest.param(7, id="unassigned-7"),
        pytest.param(8, id="removeFromCRL"),
        pytest.param(10, id="aACompromise"),
        pytest.param(11, id="out-of-range-11"),
        pytest.param(-1, id="negative"),
        pytest.param("x", id="string"),
        pytest.param("1", id="numeric-string"),
        pytest.param(1.5, id="fraction"),
        pytest.param(True, id="boolean"),
        pytest.param(None, id="null"),
    ],
)
def test_other_reasons_are_bad_revocation_reason(wire: Wire, reason: object) -> None:
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "bad-reason.example.test")
    response = by_account(wire, account, cert, reason=reason)
    assert_problem(response, 400, "badRevocationReason", wire.directory_url)
    response = revoke(wire, cert_key, cert, reason=reason)
    assert_problem(response, 400, "badRevocationReason", wire.directory_url)
    # Still revocable, so still active: the refusals changed nothing.
    assert_ok(by_account(wire, account, cert, reason=0))


# -- what cannot be revoked -------------------------------------------------------------------


def test_second_revocation_is_already_revoked(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "twice.example.test")
    assert_ok(by_account(wire, account, cert, reason=4))
    for response in (
        by_account(wire, account, cert, reason=4),
        by_account(wire, account, cert, reason=1),
        revoke(wire, cert_key, cert, reason=1),
    ):
        assert_problem(response, 400, "alreadyRevoked", wire.directory_url)
    assert_revoked(served, cert, 4)  # the first reason stands


def test_concurrent_revocations_have_one_winner(served: ServedCertctl, wire: Wire) -> None:
    """Issuer (kid) and certificate key (jwk) at the same moment: one revocation, one
    alreadyRevoked, one audit event."""
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "race-revoke.example.test")
    payload = payload_bytes({"certificate": der_b64(cert), "reason": 4})
    url = wire["revokeCert"]
    bodies = [
        flattened(account.key, wire.header(account.key, url, kid=account.url), payload),
        flattened(cert_key, wire.header(cert_key, url), payload),
    ]
    clients = [wire.new_http() for _ in bodies]
    barrier = threading.Barrier(len(bodies))
    results: list[httpx.Response | BaseException | None] = [None] * len(bodies)

    def post(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = clients[i].post(
                url, json=bodies[i], headers={"Content-Type": "application/jose+json"}
            )
        except BaseException as exc:  # reported in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert len(responses) == len(bodies), results
    assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 400)
    assert_problem(loser, 400, "alreadyRevoked", wire.directory_url)
    assert_revoked(served, cert, 4)
    events = count_rows(
        served,
        "SELECT count(*) FROM audit_events WHERE action = 'certificate_revoked' "
        "AND object_id = :id",
        id=shown(served, cert)["certificate_id"],
    )
    assert events == 1


def test_certificate_revoked_by_the_operator_is_already_revoked(
    served: ServedCertctl, wire: Wire
) -> None:
    account = wire.new_account()
    cert, _ = issue(wire, account, "operator-revoked.example.test")
    out = certctl_cli(served, "cert", "revoke", serial_hex(cert), "--reason", "superseded")
    assert "revoked" in out
    assert_revoked(served, cert, 4)
    response = by_account(wire, account, cert)
    assert_problem(response, 400, "alreadyRevoked", wire.directory_url)


def test_certificate_not_issued_here_is_refused(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    ours, _ = issue(wire, account, "ours.example.test")
    foreign_key = Key.ec256()
    foreign = self_signed(foreign_key, "ours.example.test")
    # Same serial as one of ours, but not ours: the whole certificate is compared.
    forged = self_signed(foreign_key, "ours.example.test", serial=ours.serial_number)
    for cert in (foreign, forged):
        for response in (
            by_account(wire, account, cert),
            revoke(wire, foreign_key, cert),
        ):
            assert_problem(response, 404, "malformed", wire.directory_url)
    assert_active(served, ours)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="no-certificate"),
        pytest.param({"certificate": 5}, id="number"),
        pytest.param({"certificate": b64(b"not a certificate")}, id="not-der"),
        pytest.param({"certificate": "!!!"}, id="not-base64url"),
    ],
)
def test_unusable_certificate_field_is_malformed(wire: Wire, payload: dict[str, Any]) -> None:
    account = wire.new_account()
    response = wire.as_account(account, wire["revokeCert"], payload)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_pem_instead_of_der_is_malformed(wire: Wire) -> None:
    account = wire.new_account()
    cert, _ = issue(wire, account, "pem-revoke.example.test")
    pem = b64(cert.public_bytes(serialization.Encoding.PEM))
    response = wire.as_account(account, wire["revokeCert"], {"certificate": pem})
    assert_problem(response, 400, "malformed", wire.directory_url)


# -- keyCompromise blocks the key ------------------------------------------------------------


def test_key_compromise_blocks_the_key_for_csrs_and_accounts(
    served: ServedCertctl, wire: Wire
) -> None:
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "compromised.example.test")
    assert_ok(by_account(wire, account, cert, reason=1))
    assert_revoked(served, cert, 1)

    # RFC 8555 §7.6: the key is not certified again, for this account or any other ...
    for who in (account, wire.new_account()):
        _, order = wire.ready_order(who, "compromised.example.test")
        response = wire.finalize(who, order, csr_der(cert_key, ["compromised.example.test"]))
        assert_problem(response, 400, "badCSR", wire.directory_url)
    # ... nor does it become an account key.
    response = wire.signed(cert_key, wire["newAccount"], {"termsOfServiceAgreed": True})
    assert_problem(response, 400, "badPublicKey", wire.directory_url)
    # Another key for the same name is fine.
    _, order = wire.ready_order(account, "compromised.example.test")
    fresh = wire.finalize(account, order, csr_der(Key.ec256(), ["compromised.example.test"]))
    assert fresh.status_code == 200, fresh.text


def test_other_reasons_do_not_block_the_key(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    cert, cert_key = issue(wire, account, "superseded.example.test")
    assert_ok(revoke(wire, cert_key, cert, reason=4))
    _, order = wire.ready_order(account, "superseded.example.test")
    reused = wire.finalize(account, order, csr_der(cert_key, ["superseded.example.test"]))
    assert reused.status_code == 200, reused.text


def test_key_compromise_by_an_authorized_third_account_blocks_no_key(
    served: ServedCertctl, wire: Wire
) -> None:
    # Holding authorizations proves control of the names, not of the certificate's key:
    # such an account may revoke, but must not be able to ban someone else's key.
    owner, other = wire.new_account(), wire.new_account()
    cert, cert_key = issue(wire, owner, "third.example.test")
    issue(wire, other, "third.example.test")  # trust mode: other now holds valid authzs
    assert_ok(by_account(wire, other, cert, reason=1))
    assert_revoked(served, cert, 1)
    _, order = wire.ready_order(owner, "third.example.test")
    reused = wire.finalize(owner, order, csr_der(cert_key, ["third.example.test"]))
    assert reused.status_code == 200, reused.text
