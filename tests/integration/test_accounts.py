"""Accounts (RFC 8555 §7.3) on the default instance: creation, lookup, contacts,
deactivation. Normal flows go through certbot's ``acme`` library."""

from __future__ import annotations

from typing import Any

import pytest
from acme import errors, messages

from tests.integration.acme_lib import acme_client
from tests.integration.wire import Key, Wire, assert_problem
from tests.support.server import ServedCertctl


def test_new_account_201_then_same_key_200_same_location(wire: Wire) -> None:
    key = Key.ec256()
    first = wire.signed(key, wire["newAccount"], {"termsOfServiceAgreed": True})
    assert first.status_code == 201, first.text
    location = first.headers["Location"]
    assert location.startswith(wire["newAccount"].rsplit("/", 1)[0] + "/account/")
    assert first.json()["status"] == "valid"

    again = wire.signed(key, wire["newAccount"], {"termsOfServiceAgreed": True})
    assert again.status_code == 200, again.text
    assert again.headers["Location"] == location

    # certbot's client sees the same: ConflictError carrying the existing Location.
    client = acme_client(wire.directory_url, wire.served.root_pem_path, key)
    with pytest.raises(errors.ConflictError) as conflict:
        client.register()
    assert conflict.value.location == location


def test_account_with_the_acme_library(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    regr = client.register(email="admin@example.test")
    assert regr.uri and regr.uri.startswith(wire.directory_url.removesuffix("directory"))
    assert regr.body.status == "valid"
    assert regr.body.contact == ("mailto:admin@example.test",)
    queried = client.acme.query_registration(regr)
    assert queried.uri == regr.uri
    assert queried.body.contact == ("mailto:admin@example.test",)


def test_only_return_existing_with_an_unknown_key(wire: Wire) -> None:
    key = Key.ec256()
    response = wire.signed(key, wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(response, 400, "accountDoesNotExist", wire.directory_url)
    # ... and it did not create one: still unknown.
    response = wire.signed(key, wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(response, 400, "accountDoesNotExist", wire.directory_url)
    # An existing key is found.
    account = wire.new_account(key)
    found = wire.signed(key, wire["newAccount"], {"onlyReturnExisting": True})
    assert (found.status_code, found.headers["Location"]) == (200, account.url)


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        pytest.param("tel:+15555550100", "unsupportedContact", id="tel"),
        pytest.param("https://example.test/me", "unsupportedContact", id="https"),
        pytest.param("mailto:", "invalidContact", id="empty-mailto"),
        pytest.param("mailto:no-at-sign", "invalidContact", id="no-at"),
        pytest.param("mailto:a@b@example.test", "invalidContact", id="two-at"),
        pytest.param("mailto:a@example.test?subject=hi", "invalidContact", id="hfields"),
        pytest.param("mailto:a@example.test,b@example.test", "invalidContact", id="two-addrs"),
        pytest.param("mailto:a b@example.test", "invalidContact", id="space"),
    ],
)
def test_contact_validation_on_new_account(wire: Wire, contact: str, problem: str) -> None:
    key = Key.ec256()
    body = {"termsOfServiceAgreed": True, "contact": [contact]}
    response = wire.signed(key, wire["newAccount"], body)
    assert_problem(response, 400, problem, wire.directory_url)
    response = wire.signed(key, wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(response, 400, "accountDoesNotExist", wire.directory_url)


def test_contact_update(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    regr = client.register(email="old@example.test")
    new_body = regr.body.update(contact=("mailto:new@example.test", "mailto:ops@example.test"))
    updated = client.acme.update_registration(regr, new_body)
    assert updated.body.contact == ("mailto:new@example.test", "mailto:ops@example.test")
    assert client.acme.query_registration(regr).body.contact == updated.body.contact

    # A refused update changes nothing.
    response = client.post_as_get(regr.uri)
    assert response.json()["contact"] == list(updated.body.contact)
    key = client.key
    bad = wire.signed(key, regr.uri, {"contact": ["tel:+15555550100"]}, kid=regr.uri)
    assert_problem(bad, 400, "unsupportedContact", wire.directory_url)
    assert client.post_as_get(regr.uri).json()["contact"] == list(updated.body.contact)


def test_deactivated_account_is_refused_everywhere(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    regr = client.register()
    done = client.acme.deactivate_registration(regr)
    assert done.body.status == "deactivated"
    kid = regr.uri
    key = client.key

    # RFC 8555 §7.3.6: any further request signed by the account key is unauthorized.
    order = {"identifiers": [{"type": "dns", "value": "a.example.test"}]}
    attempts: list[tuple[str, dict[str, Any] | None]] = [
        (kid, None),
        (kid, {"contact": ["mailto:x@example.test"]}),
        (kid, {"status": "deactivated"}),
        (wire["newOrder"], order),
    ]
    for url, payload in attempts:
        response = wire.signed(key, url, payload, kid=kid)
        assert_problem(response, 403, "unauthorized", wire.directory_url)
    # The key cannot register again, nor find its old account.
    for flag in ("termsOfServiceAgreed", "onlyReturnExisting"):
        response = wire.signed(key, wire["newAccount"], {flag: True})
        assert_problem(response, 403, "unauthorized", wire.directory_url)
    with pytest.raises(messages.Error) as refused:
        client.post_as_get(kid)
    assert refused.value.typ == "urn:ietf:params:acme:error:unauthorized"


@pytest.mark.parametrize("status", ["revoked", "pending", 1])
def test_client_may_not_set_other_statuses(wire: Wire, status: object) -> None:
    account = wire.new_account()
    response = wire.as_account(account, account.url, {"status": status})
    assert_problem(response, 400, "malformed", wire.directory_url)
    assert wire.as_account(account, account.url).json()["status"] == "valid"
