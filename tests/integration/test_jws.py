"""Hostile JWS requests (RFC 8555 §6.2-§6.4) over real sockets: one test per rule.

Each request is correct in every way but the one under test (fresh nonce, right URL,
valid signature where one can exist), and each refusal is checked for its HTTP status,
its problem type, and the headers every ACME response keeps (Replay-Nonce, index link).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.cli import create_profile
from tests.integration.wire import (
    JOSE,
    Account,
    Key,
    Wire,
    assert_problem,
    b64,
    flattened,
    payload_bytes,
    raw_exchange,
)
from tests.support.server import ServedCertctl

NEW_ACCOUNT = {"termsOfServiceAgreed": True}
OTHER_PROFILE = "other"


@dataclass(frozen=True)
class Issued:
    """Resources of one account with an issued certificate, for POST-as-GET probes."""

    account: Account
    urls: dict[str, str]  # resource name -> URL


@pytest.fixture(scope="module")
def account(wire: Wire) -> Account:
    return wire.new_account()


@pytest.fixture(scope="module")
def issued(wire: Wire) -> Issued:
    account = wire.new_account()
    order_url, order, _ = wire.issue(account, "jws.example.test")
    urls = {
        "order": order_url,
        "authz": order["authorizations"][0],
        "cert": order["certificate"],
        "orders": wire.as_account(account, account.url).json()["orders"],
    }
    return Issued(account, urls)


@pytest.fixture(scope="module")
def other_wire(served: ServedCertctl) -> Iterator[Wire]:
    """The directory of a second profile, created while the server runs."""
    create_profile(served, OTHER_PROFILE)
    client = Wire(served, f"/acme/profile/{OTHER_PROFILE}/directory")
    yield client
    client.close()


def new_account_jws(wire: Wire, key: Key, **header: Any) -> dict[str, str]:
    """A valid newAccount JWS whose protected header is updated with ``header``."""
    protected = wire.header(key, wire["newAccount"]) | header
    return flattened(key, {k: v for k, v in protected.items() if v is not None}, b"{}")


# -- serialization (RFC 8555 §6.2: flattened JSON only) --------------------------------


def test_compact_serialization_is_malformed(wire: Wire) -> None:
    jws = new_account_jws(wire, Key.ec256())
    compact = f"{jws['protected']}.{jws['payload']}.{jws['signature']}".encode()
    response = wire.post(wire["newAccount"], compact)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_general_serialization_is_malformed(wire: Wire) -> None:
    jws = new_account_jws(wire, Key.ec256())
    general = {
        "payload": jws["payload"],
        "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}],
    }
    response = wire.post(wire["newAccount"], general)
    assert_problem(response, 400, "malformed", wire.directory_url)


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4 or 2)


def _standard_alphabet(text: str) -> str:
    return text.replace("-", "+").replace("_", "/")


def _signature_with_both_alphabet_chars(wire: Wire) -> dict[str, str]:
    """ECDSA is randomised: sign again until the signature shows both '-' and '_'."""
    key = Key.ec256()
    header = wire.header(key, wire["newAccount"])
    for _ in range(200):
        jws = flattened(key, header, payload_bytes(NEW_ACCOUNT))
        if "-" in jws["signature"] and "_" in jws["signature"]:
            return jws
    raise AssertionError("no signature with both '-' and '_' in 200 tries")


@pytest.mark.parametrize(
    ("member", "spoil"),
    [
        pytest.param("protected", _padded, id="protected-padded"),
        pytest.param("payload", _padded, id="payload-padded"),
        pytest.param("signature", _standard_alphabet, id="signature-plus-slash"),
    ],
)
def test_bad_base64url_is_malformed(wire: Wire, member: str, spoil: Callable[[str], str]) -> None:
    jws = _signature_with_both_alphabet_chars(wire)
    spoiled = spoil(jws[member])
    assert spoiled != jws[member]
    response = wire.post(wire["newAccount"], jws | {member: spoiled})
    assert_problem(response, 400, "malformed", wire.directory_url)


# -- algorithms (RFC 8555 §6.2: no "none", no MAC) --------------------------------------


def _unsigned(wire: Wire, alg: str) -> dict[str, str]:
    key = Key.ec256()
    header = wire.header(key, wire["newAccount"]) | {"alg": alg}
    protected = b64(json.dumps(header).encode())
    payload = b64(payload_bytes(NEW_ACCOUNT))
    if alg == "none":
        signature = b""
    else:  # HS256 with a key anyone can pick: proves nothing about a private key
        signature = hmac.digest(b"k" * 32, f"{protected}.{payload}".encode(), hashlib.sha256)
    return {"protected": protected, "payload": payload, "signature": b64(signature)}


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_alg_none_and_mac_are_bad_signature_algorithm(wire: Wire, alg: str) -> None:
    response = wire.post(wire["newAccount"], _unsigned(wire, alg))
    doc = assert_problem(response, 400, "badSignatureAlgorithm", wire.directory_url)
    algorithms = doc["algorithms"]
    assert isinstance(algorithms, list)
    assert {"RS256", "ES256"} <= set(algorithms), algorithms
    assert alg not in algorithms


# -- key identification (RFC 8555 §6.2: exactly one of jwk and kid) --------------------


def test_both_jwk_and_kid_is_malformed(wire: Wire, account: Account) -> None:
    jws = new_account_jws(wire, account.key, kid=account.url)
    response = wire.post(wire["newAccount"], jws)
    assert_problem(response, 400, "malformed", wire.directory_url)
    # The same with kid only, on a kid endpoint, is accepted.
    assert wire.as_account(account, account.url).status_code == 200


def test_neither_jwk_nor_kid_is_malformed(wire: Wire) -> None:
    jws = new_account_jws(wire, Key.ec256(), jwk=None)
    assert "jwk" not in json.loads(base64.urlsafe_b64decode(jws["protected"] + "=="))
    response = wire.post(wire["newAccount"], jws)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_jwk_on_a_kid_endpoint_is_malformed(wire: Wire, account: Account) -> None:
    # The account's own key, embedded: newOrder takes a kid (RFC 8555 §6.2).
    body = {"identifiers": [{"type": "dns", "value": "a.example.test"}]}
    response = wire.signed(account.key, wire["newOrder"], body)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_kid_on_new_account_is_malformed(wire: Wire, account: Account) -> None:
    response = wire.signed(account.key, wire["newAccount"], NEW_ACCOUNT, kid=account.url)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_kid_of_a_missing_account_is_account_does_not_exist(wire: Wire) -> None:
    kid = wire["newAccount"].rsplit("/", 1)[0] + "/account/acct-nosuchaccount0000000000"
    response = wire.signed(Key.ec256(), wire["newOrder"], {"identifiers": []}, kid=kid)
    assert_problem(response, 400, "accountDoesNotExist", wire.directory_url)


def test_kid_signed_with_another_key_is_unauthorized(wire: Wire, account: Account) -> None:
    # Also an account key, just not this account's: the stored key decides (§6.2).
    other = wire.new_account()
    response = wire.signed(other.key, account.url, None, kid=account.url)
    assert_problem(response, 403, "unauthorized", wire.directory_url)


def test_kid_of_profile_a_on_profile_b_is_unauthorized(
    wire: Wire, other_wire: Wire, account: Account
) -> None:
    body = {"identifiers": [{"type": "dns", "value": "a.example.test"}]}
    # The kid as issued by profile A, sent to profile B's newOrder.
    response = other_wire.signed(account.key, other_wire["newOrder"], body, kid=account.url)
    assert_problem(response, 403, "unauthorized", other_wire.directory_url)
    # The same account id dressed up as an account URL of profile B.
    forged_kid = other_wire["newAccount"].rsplit("/", 1)[0] + f"/account/{account.id}"
    response = other_wire.signed(account.key, other_wire["newOrder"], body, kid=forged_kid)
    assert_problem(response, 403, "unauthorized", other_wire.directory_url)
    # Control: on its own profile the account may order.
    assert wire.new_order(account, "a.example.test").status_code == 201


# -- extensions (RFC 7797, RFC 7515 §4.1.11) --------------------------------------------


def test_b64_false_is_malformed(wire: Wire) -> None:
    jws = new_account_jws(wire, Key.ec256(), b64=False, crit=["b64"])
    response = wire.post(wire["newAccount"], jws)
    assert_problem(response, 400, "malformed", wire.directory_url)


def test_unknown_crit_is_malformed(wire: Wire) -> None:
    jws = new_account_jws(wire, Key.ec256(), crit=["urn:example:unknown"])
    jws_header = json.loads(base64.urlsafe_b64decode(jws["protected"] + "=="))
    assert jws_header["crit"] == ["urn:example:unknown"]
    response = wire.post(wire["newAccount"], jws)
    assert_problem(response, 400, "malformed", wire.directory_url)


# -- url (RFC 8555 §6.4) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed_for", "posted_to"),
    [
        pytest.param("{new_order}", "{new_account}", id="other-path"),
        pytest.param("https://localhost:{port}/acme/new-account", "{new_account}", id="other-host"),
        pytest.param("{new_account}/", "{new_account}", id="trailing-slash"),
        pytest.param("{new_account}?x=1", "{new_account}", id="query-in-jws"),
        pytest.param("{new_account}", "{new_account}?x=1", id="query-in-request"),
    ],
)
def test_url_mismatch_is_unauthorized(wire: Wire, signed_for: str, posted_to: str) -> None:
    names = {
        "new_account": wire["newAccount"],
        "new_order": wire["newOrder"],
        "port": wire.served.port,
    }
    signed_url, post_url = signed_for.format(**names), posted_to.format(**names)
    assert signed_url != post_url
    key = Key.ec256()
    jws = flattened(key, wire.header(key, signed_url), payload_bytes(NEW_ACCOUNT))
    response = wire.post(post_url, jws)
    assert_problem(response, 403, "unauthorized", wire.directory_url)


# -- transport: media type and size (RFC 8555 §6.2) -------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_content_type_other_than_jose_is_415(wire: Wire, content_type: str | None) -> None:
    jws = json.dumps(new_account_jws(wire, Key.ec256())).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = wire.http.post(wire["newAccount"], content=jws, headers=headers)
    assert_problem(response, 415, "malformed", wire.directory_url)


def _request_head(wire: Wire, url: str, framing: str) -> bytes:
    path = url.removeprefix(wire.served.base_url)
    host = f"{wire.served.host}:{wire.served.port}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JOSE}\r\n{framing}\r\n\r\n"
    ).encode()


def test_body_over_the_cap_declared_is_413_before_the_body_is_sent(wire: Wire) -> None:
    # 1 GiB declared, nothing sent: an answer at all shows the server did not wait for it.
    head = _request_head(wire, wire["newAccount"], f"Content-Length: {1 << 30}")
    response = raw_exchange(wire.served, head, [])
    assert response.status == 413
    _assert_raw_problem(wire, response, "malformed")


def test_body_over_the_cap_chunked_is_413_without_the_end(wire: Wire) -> None:
    # 16 octets over the 64 KiB cap, and never the final chunk: the server can only
    # answer by counting as it reads. (Nothing beyond the cap is sent, so the server's
    # close never meets unread data, which would reset the connection.)
    head = _request_head(wire, wire["newAccount"], "Transfer-Encoding: chunked")
    sizes = [16384] * 4 + [16]
    chunks = [f"{n:x}\r\n".encode() + b"a" * n + b"\r\n" for n in sizes]
    response = raw_exchange(wire.served, head, chunks)
    assert response.status == 413
    _assert_raw_problem(wire, response, "malformed")


def _assert_raw_problem(wire: Wire, response: Any, problem: str) -> None:
    assert response.header("content-type").startswith("application/problem+json")
    assert json.loads(response.body)["type"] == f"urn:ietf:params:acme:error:{problem}"
    assert response.header("replay-nonce")
    assert f'<{wire.directory_url}>;rel="index"' in response.header("link")


# -- POST-as-GET (RFC 8555 §6.3) ---------------------------------------------------------


@pytest.mark.parametrize("resource", ["order", "authz", "cert", "orders"])
def test_post_as_get_with_a_payload_is_malformed(wire: Wire, issued: Issued, resource: str) -> None:
    url = issued.urls[resource]
    assert wire.as_account(issued.account, url).status_code == 200  # empty payload: fine
    response = wire.as_account(issued.account, url, {})
    assert_problem(response, 400, "malformed", wire.directory_url)


# -- account key policy (RFC 8555 §6.7 badPublicKey) ------------------------------------


@pytest.mark.parametrize(
    ("bits", "exponent"),
    [pytest.param(1024, 65537, id="rsa-1024"), pytest.param(2048, 3, id="exponent-3")],
)
def test_weak_rsa_account_key_is_bad_public_key(wire: Wire, bits: int, exponent: int) -> None:
    key = Key.rsa(bits, exponent)
    response = wire.signed(key, wire["newAccount"], NEW_ACCOUNT)
    assert_problem(response, 400, "badPublicKey", wire.directory_url)
