"""ACME Renewal Information (RFC 9773): renewalInfo, its window, operator shifts and
``replaces`` in newOrder.

The module's instance polls at CERTCTL_ACME_SERVER_ARI_POLL_INTERVAL=1h and has a profile
with a 30-day renewal policy; a second instance has ARI turned off.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from acme.client import _renewal_info_path_component
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.acme_lib import acme_client
from tests.integration.cli import certctl_cli, create_profile
from tests.integration.servers import serve
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
from tests.support.postgres import fresh_database
from tests.support.server import ServedCertctl

ACME = "CERTCTL_ACME_SERVER_"
POLL_INTERVAL_S = 3600
POLICY = "ari30"
POLICY_DAYS = 30
SHIFTED = "ari-shifted"
# Window times are whole seconds on the wire; the certificate's are too.
SLACK = timedelta(seconds=1)
# How far "now" on the server may be from "now" here, across a request.
CLOCK_SLACK = timedelta(seconds=5)
# The certificate that expires during a test: long enough to be issued under load.
EXPIRE_AFTER_S = 5


@contextlib.contextmanager
def own_database(database_url: str | None) -> Iterator[str | None]:
    """SQLite stays per data dir; on PostgreSQL each instance gets a fresh database."""
    if database_url is None:
        yield None
        return
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def ari_served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    env = {ACME + "ARI_POLL_INTERVAL": "1h"}
    with serve(request, tmp_path_factory, database_url, env) as server:
        create_profile(server, POLICY, "--renewal-window-days", str(POLICY_DAYS))
        create_profile(server, SHIFTED)
        yield server


@pytest.fixture(scope="module")
def ari(ari_served: ServedCertctl) -> Iterator[Wire]:
    client = Wire(ari_served)
    yield client
    client.close()


@pytest.fixture(scope="module")
def policy(ari_served: ServedCertctl) -> Iterator[Wire]:
    client = Wire(ari_served, f"/acme/profile/{POLICY}/directory")
    yield client
    client.close()


@pytest.fixture(scope="module")
def no_ari(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[Wire]:
    with (
        own_database(database_url) as url,
        serve(request, tmp_path_factory, url, {ACME + "ARI_ENABLED": "false"}) as server,
    ):
        client = Wire(server)
        yield client
        client.close()


# -- helpers --------------------------------------------------------------------------------


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    serial = cert.serial_number
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # 0x00 when the top bit is set
    return f"{b64(aki.key_identifier)}.{b64(octets)}"


def issue(wire: Wire, account: Account, *names: str, **extra: Any) -> x509.Certificate:
    response = wire.new_order(account, *names, **extra)
    assert response.status_code == 201, response.text
    order = response.json()
    fin = wire.finalize(account, order, csr_der(Key.ec256(), list(names)))
    assert fin.status_code == 200, fin.text
    chain = wire.as_account(account, fin.json()["certificate"]).content
    return x509.load_pem_x509_certificates(chain)[0]


def get_info(wire: Wire, ident: str) -> httpx.Response:
    return wire.http.get(f"{wire['renewalInfo']}/{ident}")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def window(wire: Wire, cert: x509.Certificate) -> tuple[datetime, datetime]:
    response = get_info(wire, cert_id(cert))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    doc = response.json()
    start, end = (parse_time(doc["suggestedWindow"][k]) for k in ("start", "end"))
    assert start < end, doc
    return start, end


def close_to(actual: datetime, expected: datetime, slack: timedelta = SLACK) -> bool:
    return abs(actual - expected) <= slack


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


# -- renewalInfo -------------------------------------------------------------------------------


def test_directory_has_renewal_info(ari: Wire, policy: Wire) -> None:
    for wire in (ari, policy):
        base = wire.directory_url.removesuffix("/directory")
        assert wire["renewalInfo"] == f"{base}/renewal-info"


def test_window_is_the_last_third_of_validity(ari: Wire) -> None:
    cert = issue(ari, ari.new_account(), "third.ari.example.test")
    response = get_info(ari, cert_id(cert))
    assert response.status_code == 200, response.text
    assert response.headers["Retry-After"] == str(POLL_INTERVAL_S)
    start, end = window(ari, cert)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert close_to(start, not_after - (not_after - not_before) / 3), (start, not_after)
    assert close_to(end, not_after), (end, not_after)


def test_acme_library_agrees(ari_served: ServedCertctl, ari: Wire) -> None:
    """certbot's client builds the same identifier and renews inside the window."""
    client = acme_client(ari.directory_url, ari_served.root_pem_path)
    client.register()
    _, chain, _ = client.issue("lib.ari.example.test")
    cert = x509.load_pem_x509_certificates(chain.encode())[0]
    assert _renewal_info_path_component(cert) == cert_id(cert)
    start, end = window(ari, cert)
    renew_at, next_poll = client.acme.renewal_time(chain.encode())
    assert renew_at is not None
    assert start <= renew_at <= end
    # Retry-After: 3600 (a naive local time, as the library computes it).
    assert timedelta(minutes=59) < next_poll - datetime.now() <= timedelta(hours=1)


def test_renewal_policy_window(ari_served: ServedCertctl, policy: Wire) -> None:
    cert = issue(policy, policy.new_account(), "policy.ari.example.test")
    not_after = cert.not_valid_after_utc
    assert not_after - cert.not_valid_before_utc > timedelta(days=POLICY_DAYS)
    start, end = window(policy, cert)
    assert close_to(start, not_after - timedelta(days=POLICY_DAYS)), (start, not_after)
    assert close_to(end, not_after - timedelta(days=POLICY_DAYS / 2)), (end, not_after)


def _short_cert(policy: Wire, name: str, days: int) -> x509.Certificate:
    not_after = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    stamp = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    return issue(policy, policy.new_account(), name, notAfter=stamp)


def test_renewal_policy_longer_than_the_certificate(policy: Wire) -> None:
    """A certificate with less validity left than the policy's N days (its notAfter was
    requested) is due from the start, until N/2 days before it expires."""
    cert = _short_cert(policy, "short.policy.ari.example.test", POLICY_DAYS * 2 // 3)
    start, end = window(policy, cert)
    assert close_to(start, cert.not_valid_before_utc), start
    assert close_to(end, cert.not_valid_after_utc - timedelta(days=POLICY_DAYS / 2)), end


def test_renewal_policy_that_cannot_fit_the_certificate(policy: Wire) -> None:
    """Shorter than N/2 days: the policy window would end before the certificate begins
    (RFC 9773 §4.2 wants end after start); the default last third applies instead."""
    cert = _short_cert(policy, "shorter.policy.ari.example.test", POLICY_DAYS // 3)
    start, end = window(policy, cert)  # asserts start < end
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert close_to(start, not_after - (not_after - not_before) / 3), (start, not_after)
    assert close_to(end, not_after), (end, not_after)


def test_revoked_certificate_window_is_in_the_past(ari: Wire) -> None:
    account = ari.new_account()
    cert = issue(ari, account, "revoked.ari.example.test")
    _, end = window(ari, cert)
    assert end > datetime.now(UTC)
    der = cert.public_bytes(serialization.Encoding.DER)
    revoked = ari.as_account(account, ari["revokeCert"], {"certificate": b64(der)})
    assert revoked.status_code == 200, revoked.text
    start, end = window(ari, cert)
    # RFC 9773 §4.2: a window entirely in the past means "renew now".
    assert start < end < datetime.now(UTC)


def test_expired_certificate_window_starts_now(ari: Wire) -> None:
    account = ari.new_account()
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=EXPIRE_AFTER_S)
    cert = issue(
        ari, account, "expired.ari.example.test", notAfter=not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert cert.not_valid_after_utc == not_after
    time.sleep(max(0.0, (not_after - datetime.now(UTC)).total_seconds()) + 1.5)
    asked = datetime.now(UTC)
    start, end = window(ari, cert)
    assert close_to(start, asked, CLOCK_SLACK), (start, asked)
    assert close_to(end, asked + timedelta(days=1), CLOCK_SLACK), (end, asked)


def _malformed_ids(cert: x509.Certificate) -> list[str]:
    aki, serial = cert_id(cert).split(".")
    negative, zero, padded = b64(bytes([0x80, 0x01])), b64(bytes([0])), b64(bytes([0, 1]))
    too_long = b64(bytes([1]) * 22)
    return [
        f"{aki}=.{serial}",  # padding
        f"{aki}.{serial}=",
        f"{aki}{serial}",  # no dot
        f"{aki}.{serial}.{serial}",  # two dots
        f".{serial}",  # empty parts
        f"{aki}.",
        f"{aki}.{negative}",  # negative serial
        f"{aki}.{zero}",
        f"{aki}.{padded}",  # not minimally encoded
        f"{aki}.{too_long}",  # longer than any serial
        f"{aki.replace('-', '+').replace('_', '+')}+.{serial}",  # standard alphabet
        f"{aki}.{serial}%20",
    ]


def test_malformed_identifiers_are_400(ari: Wire) -> None:
    cert = issue(ari, ari.new_account(), "malformed.ari.example.test")
    for ident in _malformed_ids(cert):
        response = get_info(ari, ident)
        assert response.status_code == 400, (ident, response.text)
        assert_problem(response, 400, "malformed", ari.directory_url)


def test_unknown_certificate_is_404(ari: Wire) -> None:
    cert = issue(ari, ari.new_account(), "unknown.ari.example.test")
    aki, serial = cert_id(cert).split(".")
    other_serial = x509.random_serial_number()
    other_octets = other_serial.to_bytes(other_serial.bit_length() // 8 + 1, "big")
    wrong_aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert wrong_aki.value.key_identifier is not None
    flipped = bytes(b ^ 0xFF for b in wrong_aki.value.key_identifier)
    for ident in (f"{aki}.{b64(other_octets)}", f"{b64(flipped)}.{serial}"):
        response = get_info(ari, ident)
        assert_problem(response, 404, "malformed", ari.directory_url)


def test_renewal_info_is_get_only(ari: Wire) -> None:
    cert = issue(ari, ari.new_account(), "get-only.ari.example.test")
    response = ari.post(f"{ari['renewalInfo']}/{cert_id(cert)}", b"{}")
    assert_problem(response, 405, "malformed", ari.directory_url)


# -- operator shifts ------------------------------------------------------------------------


def test_shift_by_serial_to_now(ari_served: ServedCertctl, ari: Wire) -> None:
    account = ari.new_account()
    cert = issue(ari, account, "shift-now.ari.example.test")
    bystander = issue(ari, account, "bystander.ari.example.test")
    before = window(ari, bystander)
    _, end = window(ari, cert)
    assert end > datetime.now(UTC) + timedelta(days=1)

    shifted_at = datetime.now(UTC)
    out = certctl_cli(ari_served, "ari", "shift", "--serial", serial_hex(cert), "--end", "now")
    assert "shifted 1 " in out
    start, end = window(ari, cert)
    asked = datetime.now(UTC)
    assert shifted_at - CLOCK_SLACK <= end <= asked + CLOCK_SLACK, (end, shifted_at, asked)
    assert start <= end - timedelta(minutes=1)
    assert window(ari, bystander) == before  # only that serial moved


def test_shift_by_profile_to_a_time(ari_served: ServedCertctl) -> None:
    shifted = Wire(ari_served, f"/acme/profile/{SHIFTED}/directory")
    try:
        account = shifted.new_account()
        certs = [issue(shifted, account, f"{n}.shift-profile.example.test") for n in "ab"]
        end_at = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
        out = certctl_cli(
            ari_served,
            "ari",
            "shift",
            "--profile",
            SHIFTED,
            "--end",
            end_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        assert "shifted 2 " in out
        for cert in certs:
            start, end = window(shifted, cert)
            assert end == end_at
            assert start < end
    finally:
        shifted.close()


def test_shift_later_than_the_window_changes_nothing(ari_served: ServedCertctl, ari: Wire) -> None:
    cert = issue(ari, ari.new_account(), "shift-later.ari.example.test")
    before = window(ari, cert)
    later = cert.not_valid_after_utc + timedelta(days=30)
    certctl_cli(
        ari_served,
        "ari",
        "shift",
        "--serial",
        serial_hex(cert),
        "--end",
        later.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert window(ari, cert) == before


# -- ARI turned off --------------------------------------------------------------------------


def test_ari_disabled(no_ari: Wire) -> None:
    assert "renewalInfo" not in no_ari.directory
    cert = issue(no_ari, no_ari.new_account(), "off.ari.example.test")
    base = no_ari.directory_url.removesuffix("/directory")
    response = no_ari.http.get(f"{base}/renewal-info/{cert_id(cert)}")
    assert_problem(response, 404, "malformed", no_ari.directory_url)


# -- replaces (RFC 9773 §5) -----------------------------------------------------------------


def test_replaces_is_reflected_in_the_order(ari: Wire) -> None:
    """RFC 9773 §5: an accepted ``replaces`` is in the response and every later read."""
    account = ari.new_account()
    name = "reflect.ari.example.test"
    cert = issue(ari, account, name)
    response = ari.new_order(account, name, replaces=cert_id(cert))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["replaces"] == cert_id(cert)
    order_url = response.headers["Location"]
    assert ari.as_account(account, order_url).json()["replaces"] == cert_id(cert)
    fin = ari.finalize(account, order, csr_der(Key.ec256(), [name]))
    assert fin.status_code == 200, fin.text
    assert fin.json()["replaces"] == cert_id(cert)
    # An order without replaces has no such field.
    plain = ari.new_order(account, name)
    assert "replaces" not in plain.json()


def test_replaces_is_accepted_once(ari: Wire) -> None:
    account = ari.new_account()
    cert = issue(ari, account, "replace-once.ari.example.test")
    first = ari.new_order(account, "replace-once.ari.example.test", replaces=cert_id(cert))
    assert first.status_code == 201, first.text
    second = ari.new_order(account, "replace-once.ari.example.test", replaces=cert_id(cert))
    assert_problem(second, 409, "alreadyReplaced", ari.directory_url)
    # An order without replaces for the same name is still fine.
    plain = ari.new_order(account, "replace-once.ari.example.test")
    assert plain.status_code == 201, plain.text


def test_replaces_is_free_again_once_the_replacing_order_is_invalid(ari: Wire) -> None:
    account = ari.new_account()
    name = "replace-retry.ari.example.test"
    cert = issue(ari, account, name)
    first = ari.new_order(account, name, replaces=cert_id(cert))
    assert first.status_code == 201, first.text
    # The renewal attempt fails: its authorization is deactivated, so the order is invalid.
    authz = first.json()["authorizations"][0]
    deactivated = ari.as_account(account, authz, {"status": "deactivated"})
    assert deactivated.status_code == 200, deactivated.text
    assert ari.as_account(account, first.headers["Location"]).json()["status"] == "invalid"
    retry = ari.new_order(account, name, replaces=cert_id(cert))
    assert retry.status_code == 201, retry.text


def test_replacement_may_change_names_if_one_is_shared(ari: Wire) -> None:
    account = ari.new_account()
    cert = issue(ari, account, "a.replace-names.example.test", "b.replace-names.example.test")
    names = ("b.replace-names.example.test", "c.replace-names.example.test")
    renewed = issue(ari, account, *names, replaces=cert_id(cert))
    assert renewed.serial_number != cert.serial_number


def test_replaces_of_another_accounts_certificate_is_refused(ari: Wire) -> None:
    owner = ari.new_account()
    cert = issue(ari, owner, "replace-other.ari.example.test")
    thief = ari.new_account()
    response = ari.new_order(thief, "replace-other.ari.example.test", replaces=cert_id(cert))
    assert_problem(response, 403, "unauthorized", ari.directory_url)
    # ... and did not use the replacement up.
    mine = ari.new_order(owner, "replace-other.ari.example.test", replaces=cert_id(cert))
    assert mine.status_code == 201, mine.text


def test_replaces_sharing_no_identifier_is_refused(ari: Wire) -> None:
    account = ari.new_account()
    cert = issue(ari, account, "replace-a.ari.example.test")
    response = ari.new_order(account, "replace-b.ari.example.test", replaces=cert_id(cert))
    assert_problem(response, 400, "malformed", ari.directory_url)


@pytest.mark.parametrize(
    ("replaces", "status"),
    [
        pytest.param(5, 400, id="number"),
        pytest.param("no-dot", 400, id="no-dot"),
        pytest.param("AAAA.AQ", 404, id="unknown"),
    ],
)
def test_replaces_must_name_a_known_certificate(ari: Wire, replaces: object, status: int) -> None:
    account = ari.new_account()
    response = ari.new_order(account, "replace-bad.ari.example.test", replaces=replaces)
    assert_problem(response, status, "malformed", ari.directory_url)


def test_concurrent_replacements_have_one_winner(ari: Wire) -> None:
    account = ari.new_account()
    name = "replace-race.ari.example.test"
    cert = issue(ari, account, name)
    body = {"identifiers": [{"type": "dns", "value": name}], "replaces": cert_id(cert)}
    requests = [
        flattened(
            account.key,
            ari.header(account.key, ari["newOrder"], kid=account.url),
            payload_bytes(body),
        )
        for _ in range(2)
    ]
    clients = [ari.new_http() for _ in requests]
    barrier = threading.Barrier(len(requests))
    results: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def post(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = clients[i].post(
                ari["newOrder"],
                json=requests[i],
                headers={"Content-Type": "application/jose+json"},
            )
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert len(responses) == len(requests), results
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409], [(r.status_code, r.text) for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert_problem(loser, 409, "alreadyReplaced", ari.directory_url)
