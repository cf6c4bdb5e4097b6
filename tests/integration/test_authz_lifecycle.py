"""Authorization lifecycle after creation: deactivation by the client (RFC 8555 §7.5.2),
with the account (§7.3.6), pre-authorization (§7.4.1), and the ``profile`` newOrder field
(draft-aaron-acme-profiles).

The default profile is trust_authenticated (authorizations are born valid); ``chal`` is
challenge mode (they stay pending: nothing here ever answers a challenge).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.acme_lib import acme_client
from tests.integration.cli import certctl_cli, count_rows, create_profile
from tests.integration.wire import Account, Key, Wire, assert_problem, csr_der, link_targets
from tests.support.server import ServedCertctl

URN = "urn:ietf:params:acme:error:"
CHAL = "chal"
PREAUTH = "preauth"
PREAUTH_CHAL = "preauth-chal"
TOGGLE = "preauth-toggle"
PROFILE_CHANGE_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def profiles(served: ServedCertctl) -> ServedCertctl:
    create_profile(served, CHAL, "--acme-auth-mode", "challenge")
    create_profile(served, PREAUTH, "--allow-preauthorization", "--description", "pre-auth")
    create_profile(
        served, PREAUTH_CHAL, "--acme-auth-mode", "challenge", "--allow-preauthorization"
    )
    create_profile(served, TOGGLE)
    return served


def profile_wire(served: ServedCertctl, profile_id: str) -> Wire:
    return Wire(served, f"/acme/profile/{profile_id}/directory")


@pytest.fixture(scope="module")
def chal(profiles: ServedCertctl) -> Iterator[Wire]:
    client = profile_wire(profiles, CHAL)
    yield client
    client.close()


@pytest.fixture(scope="module")
def preauth(profiles: ServedCertctl) -> Iterator[Wire]:
    client = profile_wire(profiles, PREAUTH)
    yield client
    client.close()


def read(wire: Wire, account: Account, url: str) -> dict[str, Any]:
    response = wire.as_account(account, url)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def new_order(wire: Wire, account: Account, *names: str) -> tuple[str, dict[str, Any]]:
    response = wire.new_order(account, *names)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return response.headers["Location"], order


def deactivate(wire: Wire, account: Account, authz_url: str) -> Any:
    return wire.as_account(account, authz_url, {"status": "deactivated"})


def new_authz_url(wire: Wire) -> str:
    """The newAuthz URL of ``wire``'s profile, whether or not its directory lists it."""
    return wire["newAccount"].removesuffix("/new-account") + "/new-authz"


def wait_for_directory(wire: Wire, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The directory once ``ready`` holds: the server caches a profile for up to a second."""
    deadline = time.monotonic() + PROFILE_CHANGE_TIMEOUT_S
    while True:
        directory: dict[str, Any] = wire.http.get(wire.directory_url).json()
        if ready(directory):
            return directory
        assert time.monotonic() < deadline, f"the server never saw the change: {directory}"
        time.sleep(0.2)


def dns(name: str) -> dict[str, Any]:
    return {"identifier": {"type": "dns", "value": name}}


# -- deactivation by the client ---------------------------------------------------------------


def test_deactivate_a_valid_authorization_with_the_acme_library(
    served: ServedCertctl, wire: Wire
) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    client.register()
    order, _ = client.order("deact-lib.example.test")
    (authzr,) = order.authorizations
    assert authzr.body.status == messages.STATUS_VALID
    done = client.acme.deactivate_authorization(authzr)
    assert done.body.status == messages.STATUS_DEACTIVATED
    assert client.post_as_get(authzr.uri).json()["status"] == "deactivated"

    # RFC 8555 §7.1.6: an order with a deactivated authorization is invalid.
    assert order.uri is not None
    assert client.post_as_get(order.uri).json()["status"] == "invalid"
    with pytest.raises(messages.Error) as refused:
        client.acme.begin_finalization(order)
    assert refused.value.typ == URN + "orderNotReady"


def test_deactivated_authorization_is_not_reused(wire: Wire) -> None:
    account = wire.new_account()
    order_url, order = new_order(wire, account, "deact-reuse.example.test")
    response = deactivate(wire, account, order["authorizations"][0])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "deactivated"
    assert link_targets(response, "up") == [order_url]
    # A new order for the same name gets an authorization of its own.
    _, again = new_order(wire, account, "deact-reuse.example.test")
    assert again["status"] == "ready"
    assert again["authorizations"] != order["authorizations"]


def test_second_deactivation_is_409(wire: Wire) -> None:
    account = wire.new_account()
    _, order = new_order(wire, account, "deact-twice.example.test")
    url = order["authorizations"][0]
    assert deactivate(wire, account, url).status_code == 200
    response = deactivate(wire, account, url)
    assert_problem(response, 409, "malformed", wire.directory_url)
    assert read(wire, account, url)["status"] == "deactivated"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"status": "valid"}, id="valid"),
        pytest.param({"status": "pending"}, id="pending"),
        pytest.param({"status": "revoked"}, id="revoked"),
        pytest.param({"status": "DEACTIVATED"}, id="upper-case"),
        pytest.param({"status": 1}, id="number"),
        pytest.param({}, id="empty-object"),
        pytest.param({"status": "deactivated", "identifier": {}}, id="extra-field"),
    ],
)
def test_only_deactivation_may_be_requested(wire: Wire, payload: dict[str, Any]) -> None:
    account = wire.new_account()
    order_url, order = new_order(wire, account, "deact-bad.example.test")
    url = order["authorizations"][0]
    response = wire.as_account(account, url, payload)
    assert_problem(response, 400, "malformed", wire.directory_url)
    assert read(wire, account, url)["status"] == "valid"
    assert read(wire, account, order_url)["status"] == "ready"


def test_deactivate_a_pending_authorization(chal: Wire) -> None:
    account = chal.new_account()
    order_url, order = new_order(
        chal, account, "a.deact-pending.example.test", "b.deact-pending.example.test"
    )
    first, second = order["authorizations"]
    assert read(chal, account, first)["status"] == "pending"
    response = deactivate(chal, account, first)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "deactivated"
    assert read(chal, account, second)["status"] == "pending"
    assert read(chal, account, order_url)["status"] == "invalid"


def test_another_accounts_authorization_is_404(wire: Wire) -> None:
    owner = wire.new_account()
    _, order = new_order(wire, owner, "deact-other.example.test")
    url = order["authorizations"][0]
    response = deactivate(wire, wire.new_account(), url)
    assert_problem(response, 404, "malformed", wire.directory_url)
    assert read(wire, owner, url)["status"] == "valid"


# -- deactivation with the account -----------------------------------------------------------


def _authz_count(served: ServedCertctl, account: Account, status: str) -> int:
    return count_rows(
        served,
        "SELECT count(*) FROM acme_authorizations WHERE account_id = :a AND status = :s",
        a=account.id,
        s=status,
    )


def test_account_deactivation_deactivates_its_pending_authorizations(
    served: ServedCertctl, chal: Wire
) -> None:
    account = chal.new_account()
    bystander = chal.new_account()
    new_order(chal, account, "a.acct-deact.example.test", "b.acct-deact.example.test")
    new_order(chal, account, "c.acct-deact.example.test")
    new_order(chal, bystander, "a.acct-deact.example.test")
    assert _authz_count(served, account, "pending") == 3

    response = chal.as_account(account, account.url, {"status": "deactivated"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "deactivated"
    assert _authz_count(served, account, "pending") == 0
    assert _authz_count(served, account, "deactivated") == 3
    # Another account's authorizations for the same names are untouched.
    assert _authz_count(served, bystander, "pending") == 1


def test_account_deactivation_leaves_valid_authorizations(
    served: ServedCertctl, wire: Wire
) -> None:
    account = wire.new_account()
    new_order(wire, account, "valid-stays.example.test")
    response = wire.as_account(account, account.url, {"status": "deactivated"})
    assert response.status_code == 200, response.text
    assert _authz_count(served, account, "valid") == 1
    assert _authz_count(served, account, "deactivated") == 0


# -- pre-authorization (newAuthz) ------------------------------------------------------------


def test_new_authz_refused_without_pre_authorization(wire: Wire, chal: Wire) -> None:
    for client in (wire, chal):
        assert "newAuthz" not in client.directory
        account = client.new_account()
        response = client.as_account(account, new_authz_url(client), dns("no-pre.example.test"))
        assert_problem(response, 403, "unauthorized", client.directory_url)


def test_new_authz_with_pre_authorization(preauth: Wire) -> None:
    assert preauth["newAuthz"] == new_authz_url(preauth)
    account = preauth.new_account()
    response = preauth.as_account(account, preauth["newAuthz"], dns("Pre.Example.Test"))
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert "/authz/" in location
    doc = response.json()
    assert doc["status"] == "valid"  # trust_authenticated
    assert doc["identifier"] == {"type": "dns", "value": "pre.example.test"}
    assert link_targets(response, "up") == []  # no order holds it
    assert read(preauth, account, location)["status"] == "valid"
    # It belongs to the account: another one cannot see it.
    other = preauth.as_account(preauth.new_account(), location)
    assert_problem(other, 404, "malformed", preauth.directory_url)
    # It can be deactivated like any other authorization.
    assert deactivate(preauth, account, location).json()["status"] == "deactivated"


def test_new_authz_in_challenge_mode_is_pending(profiles: ServedCertctl) -> None:
    client = profile_wire(profiles, PREAUTH_CHAL)
    try:
        account = client.new_account()
        response = client.as_account(account, client["newAuthz"], dns("pre-chal.example.test"))
        assert response.status_code == 201, response.text
        doc = response.json()
        assert doc["status"] == "pending"
        assert sorted(c["type"] for c in doc["challenges"]) == [
            "dns-01",
            "http-01",
            "tls-alpn-01",
        ]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param(dns("*.pre-wild.example.test"), "rejectedIdentifier", id="wildcard"),
        pytest.param({}, "malformed", id="no-identifier"),
        pytest.param({"identifier": "pre.example.test"}, "malformed", id="not-an-object"),
    ],
)
def test_new_authz_refusals(preauth: Wire, payload: dict[str, Any], problem: str) -> None:
    account = preauth.new_account()
    response = preauth.as_account(account, preauth["newAuthz"], payload)
    assert_problem(response, 400, problem, preauth.directory_url)


def test_directory_lists_new_authz_only_while_offered(profiles: ServedCertctl) -> None:
    client = profile_wire(profiles, TOGGLE)
    try:
        account = client.new_account()
        url = new_authz_url(client)
        assert "newAuthz" not in client.directory
        refused = client.as_account(account, url, dns("toggle.example.test"))
        assert_problem(refused, 403, "unauthorized", client.directory_url)

        certctl_cli(profiles, "profile", "update", TOGGLE, "--allow-preauthorization")
        assert wait_for_directory(client, lambda d: "newAuthz" in d)["newAuthz"] == url
        allowed = client.as_account(account, url, dns("toggle.example.test"))
        assert allowed.status_code == 201, allowed.text

        certctl_cli(profiles, "profile", "update", TOGGLE, "--no-allow-preauthorization")
        wait_for_directory(client, lambda d: "newAuthz" not in d)
        refused = client.as_account(account, url, dns("toggle.example.test"))
        assert_problem(refused, 403, "unauthorized", client.directory_url)
    finally:
        client.close()


# -- the profile field of newOrder -----------------------------------------------------------


def test_order_names_its_profile_even_when_not_asked(profiles: ServedCertctl) -> None:
    """draft-ietf-acme-profiles §4: the server associates a profile with every order."""
    for profile_id in ("default", PREAUTH):
        client = profile_wire(profiles, profile_id)
        try:
            account = client.new_account()
            response = client.new_order(account, "unasked.example.test")
            assert response.status_code == 201, response.text
            assert response.json()["profile"] == profile_id
        finally:
            client.close()


def test_directory_meta_lists_its_own_profile(wire: Wire, preauth: Wire) -> None:
    assert list(wire.directory["meta"]["profiles"]) == ["default"]
    assert preauth.directory["meta"]["profiles"] == {PREAUTH: "pre-auth"}


def test_profile_in_new_order_with_the_acme_library(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    client.register()
    csr = x509.load_der_x509_csr(csr_der(Key.ec256(), ["profiled.example.test"]))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    order = client.acme.new_order(pem, profile="default")
    assert order.body.status == messages.STATUS_READY
    assert order.body.profile == "default"
    with pytest.raises(messages.Error) as refused:
        client.acme.new_order(pem, profile=PREAUTH)
    assert refused.value.typ == URN + "invalidProfile"


@pytest.mark.parametrize(
    ("directory", "chosen", "accepted"),
    [
        pytest.param("default", "default", True, id="default-own"),
        pytest.param(PREAUTH, PREAUTH, True, id="preauth-own"),
        pytest.param("default", PREAUTH, False, id="default-names-other"),
        pytest.param(PREAUTH, "default", False, id="preauth-names-default"),
        pytest.param("default", "no-such-profile", False, id="unknown"),
        pytest.param("default", 7, False, id="number"),
    ],
)
def test_profile_in_new_order(
    profiles: ServedCertctl, directory: str, chosen: object, accepted: bool
) -> None:
    client = profile_wire(profiles, directory)
    try:
        account = client.new_account()
        response = client.new_order(account, "chosen.example.test", profile=chosen)
        if accepted:
            assert response.status_code == 201, response.text
            # The order names the profile it was accepted under, on every read.
            assert response.json()["profile"] == chosen
            order_url = response.headers["Location"]
            assert client.as_account(account, order_url).json()["profile"] == chosen
        else:
            assert_problem(response, 400, "invalidProfile", client.directory_url)
    finally:
        client.close()
