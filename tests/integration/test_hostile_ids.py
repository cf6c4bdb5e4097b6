"""Hostile ids in ACME paths, kids and payloads, over real sockets on SQLite and PostgreSQL.

A hostile-input probe found three ways in: a literal ``*`` path segment (the route
table's own placeholder) reached the handlers with no id at all (a KeyError, answered
500); a profile segment that is no profile id was echoed into the ``Link`` header (a 500
for non-Latin-1, a connection dropped without an answer for CR, LF or NUL, injected link
parameters for ``>;rel=...``); and a NUL in an id reached PostgreSQL, which refuses NUL
in text (a 500 where SQLite answered). Each must now get the answer any unknown id gets,
and every other client-supplied string is shown refused before the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from tests.integration.wire import (
    JOSE,
    PROBLEM,
    URN,
    Account,
    Key,
    RawResponse,
    Wire,
    assert_acme_headers,
    assert_problem,
    b64,
    csr_der,
    raw_exchange,
)

UNKNOWN = "nope"  # an id of the right alphabet that names nothing


@pytest.fixture(scope="module")
def account(wire: Wire) -> Account:
    return wire.new_account()


def _answer(response: httpx.Response, directory_url: str) -> tuple[int, str, str]:
    """(status, type, detail) of a problem that is still an ACME response (§6.5, §7.1)."""
    assert response.headers["Content-Type"].split(";")[0] == PROBLEM, response.text
    assert_acme_headers(response, directory_url)
    doc: dict[str, Any] = response.json()
    return response.status_code, doc["type"], doc["detail"]


# -- ids in the path: a literal "*" and a NUL are unknown ids -----------------------------

# (path under /acme/ with {} for the id, payload: None is POST-as-GET, "csr" a finalize)
KID_RESOURCES: list[tuple[str, Any]] = [
    ("order/{}", None),
    ("order/{}/finalize", "csr"),
    ("authz/{}", None),
    ("authz/{}", {"status": "deactivated"}),
    ("challenge/{}", None),
    ("challenge/{}", {}),
    ("cert/{}", None),
    ("account/{}", None),
    ("account/{}/orders", None),
]
# (the id, as the path spells it)
HOSTILE_IDS = [
    pytest.param("*", "*", id="star"),
    pytest.param("*", "%2A", id="star-escaped"),
    pytest.param("\x00", "%00", id="nul"),
]


def _at(
    wire: Wire, account: Account, resource: str, payload: Any, spelled: str, decoded: str
) -> httpx.Response:
    """A kid request of ``account`` to ``resource`` with the id as ``spelled`` on the wire;
    the JWS url is the URL the server sees, with the id decoded (RFC 8555 §6.4)."""
    if payload == "csr":
        payload = {"csr": b64(csr_der(Key.ec256(), ["ids.example.test"]))}
    base = wire.served.base_url + "/acme/"
    return wire.signed(
        account.key,
        base + resource.format(decoded),
        payload,
        kid=account.url,
        post_to=base + resource.format(spelled),
    )


@pytest.mark.parametrize(("resource", "payload"), KID_RESOURCES)
@pytest.mark.parametrize(("decoded", "spelled"), HOSTILE_IDS)
def test_hostile_path_id_answers_as_an_unknown_id(
    wire: Wire, account: Account, resource: str, payload: Any, decoded: str, spelled: str
) -> None:
    unknown = _at(wire, account, resource, payload, UNKNOWN, UNKNOWN)
    expected = _answer(unknown, wire.directory_url)
    assert expected[0] in (403, 404), expected  # not found; another's account: unauthorized
    got = _at(wire, account, resource, payload, spelled, decoded)
    assert _answer(got, wire.directory_url) == expected


@pytest.mark.parametrize("prefix", ["/acme", "/acme/profile/default"])
@pytest.mark.parametrize("spelled", ["*", "%2A", "%00"])
def test_hostile_renewal_info_id_answers_as_an_unknown_id(
    wire: Wire, prefix: str, spelled: str
) -> None:
    directory = wire.served.base_url + prefix + "/directory"
    base = wire.served.base_url + prefix + "/renewal-info/"
    expected = _answer(wire.http.get(base + UNKNOWN), directory)
    assert _answer(wire.http.get(base + spelled), directory) == expected


# -- profile segments that are no profile id ---------------------------------------------


def _raw(wire: Wire, method: str, path: str, body: bytes = b"") -> RawResponse:
    """``path`` exactly as given on the request line (httpx would re-encode it)."""
    host = f"{wire.served.host}:{wire.served.port}"
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if method == "POST":
        head += f"Content-Type: {JOSE}\r\nContent-Length: {len(body)}\r\n"
    return raw_exchange(wire.served, (head + "\r\n").encode("ascii"), [body] if body else [])


BAD_PROFILES = [
    pytest.param("%ff", id="not-utf8"),
    pytest.param("%E2%82%AC", id="non-ascii"),
    pytest.param("%00", id="nul"),
    pytest.param("x%0d%0aX-Injected:%201", id="crlf"),
    pytest.param("x%0a", id="final-newline"),  # config's "$" matches before a final \n
    pytest.param("x%3E;rel=%22next%22,%3Cevil", id="link-params"),
    pytest.param("Default", id="upper-case"),
]


@pytest.mark.parametrize("profile", BAD_PROFILES)
@pytest.mark.parametrize(
    ("method", "suffix", "detail"),
    [
        ("GET", "directory", "no profile "),
        ("GET", "new-nonce", "no profile "),
        ("POST", "new-order", "no profile "),
        ("POST", "order/ord-1", "no profile "),
        ("GET", "nope", "no such ACME resource"),
    ],
)
def test_profile_that_is_no_profile_id_is_an_unknown_profile(
    wire: Wire, profile: str, method: str, suffix: str, detail: str
) -> None:
    body = b'{"protected":"","payload":"","signature":""}' if method == "POST" else b""
    response = _raw(wire, method, f"/acme/profile/{profile}/{suffix}", body)
    assert response.status == 404
    # The index link is the shorthand's, never one built from the segment (RFC 8288).
    assert response.headers["link"] == [f'<{wire.directory_url}>;rel="index"']
    assert response.header("replay-nonce")
    assert "x-injected" not in response.headers
    assert response.header("content-type").startswith(PROBLEM)
    doc = json.loads(response.body)
    assert doc["type"] == URN + "malformed", doc
    assert doc["detail"].startswith(detail), doc


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_acme_prefix_without_its_slash_is_a_problem_document(wire: Wire, method: str) -> None:
    """Where a client's URL joining lost the slash: an ACME problem, not a plain 404."""
    body = b'{"protected":"","payload":"","signature":""}' if method == "POST" else b""
    response = _raw(wire, method, "/acme", body)
    assert response.status == 404
    assert response.header("content-type").startswith(PROBLEM)
    assert json.loads(response.body)["type"] == URN + "malformed"


def test_unknown_profile_answer_is_the_same(wire: Wire) -> None:
    """For reference: what the segments above answer is what a well-formed unknown id
    answers, index link aside."""
    response = wire.http.get(wire.served.base_url + "/acme/profile/nope/directory")
    doc = assert_problem(
        response, 404, "malformed", wire.served.base_url + "/acme/profile/nope/directory"
    )
    assert doc["detail"] == "no profile 'nope'"


# -- NUL in a kid (RFC 8555 §6.2) and in an EAB kid (§7.3.4) --------------------------------


@pytest.mark.parametrize("tail", ["\x00", "acct-\x00", "*"])
@pytest.mark.parametrize("operation", ["account", "newOrder"])
def test_kid_outside_the_id_alphabet_names_no_account(
    wire: Wire, account: Account, tail: str, operation: str
) -> None:
    """``operation``: the account URL (authenticate) or newOrder (deferred spend)."""
    prefix = account.url.rsplit("/", 1)[0] + "/"
    url = account.url if operation == "account" else wire[operation]
    payload = (
        None
        if operation == "account"
        else {"identifiers": [{"type": "dns", "value": "kid.example.test"}]}
    )
    expected = _answer(
        wire.signed(account.key, url, payload, kid=prefix + "acct-" + UNKNOWN), wire.directory_url
    )
    assert expected[:2] == (400, URN + "accountDoesNotExist"), expected
    for kid in (prefix + tail, account.url + tail):
        got = wire.signed(account.key, url, payload, kid=kid)
        assert _answer(got, wire.directory_url) == expected, kid


def _binding(wire: Wire, key: Key, kid: str) -> dict[str, str]:
    """An externalAccountBinding well-formed in every way (RFC 8555 §7.3.4); the MAC key
    is made up: an unknown kid is refused before any MAC is checked."""
    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": wire["newAccount"]}).encode())
    payload = b64(json.dumps(key.jwk).encode())
    mac = hmac.new(b"k" * 32, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


@pytest.mark.parametrize("kid", ["kid-\x00", "\x00", "kid-*"])
def test_eab_kid_outside_the_id_alphabet_is_an_unknown_kid(wire: Wire, kid: str) -> None:
    def register(kid: str) -> httpx.Response:
        key = Key.ec256()
        binding = _binding(wire, key, kid)
        body = {"termsOfServiceAgreed": True, "externalAccountBinding": binding}
        return wire.signed(key, wire["newAccount"], body)

    expected = _answer(register("kid-" + UNKNOWN), wire.directory_url)
    assert expected == (
        403,
        URN + "unauthorized",
        "unknown external account binding key id",
    ), expected
    assert _answer(register(kid), wire.directory_url) == expected


# -- orders-list cursors (RFC 8555 §7.1.2.1) ----------------------------------------------


@pytest.mark.parametrize("cursor", ["1.000000~%00", "1.000000~ord-%00", "%00~ord-x", "1.0~*"])
def test_cursor_not_of_our_making_is_malformed(wire: Wire, account: Account, cursor: str) -> None:
    orders = account.url + "/orders"
    url = f"{orders}?cursor={cursor}"  # the JWS url is the request URL, query as sent
    response = wire.signed(account.key, url, None, kid=account.url)
    assert _answer(response, wire.directory_url) == (400, URN + "malformed", "bad orders cursor")


# -- every other client string with a NUL is refused before the database -------------------


def test_nul_in_a_new_account_contact_is_an_invalid_contact(wire: Wire) -> None:
    body = {"termsOfServiceAgreed": True, "contact": ["mailto:a\x00@example.test"]}
    response = wire.signed(Key.ec256(), wire["newAccount"], body)
    assert _answer(response, wire.directory_url)[:2] == (400, URN + "invalidContact")


def test_nul_in_an_updated_contact_is_an_invalid_contact(wire: Wire, account: Account) -> None:
    response = wire.as_account(account, account.url, {"contact": ["mailto:a@x\x00.test"]})
    assert _answer(response, wire.directory_url)[:2] == (400, URN + "invalidContact")


@pytest.mark.parametrize(
    ("identifier", "problem"),
    [
        ({"type": "dns", "value": "nul\x00.example.test"}, "rejectedIdentifier"),
        ({"type": "dns\x00", "value": "nul.example.test"}, "unsupportedIdentifier"),
        ({"type": "ip", "value": "192.0.2.1\x00"}, "rejectedIdentifier"),
    ],
)
def test_nul_in_an_identifier_is_refused(
    wire: Wire, account: Account, identifier: dict[str, str], problem: str
) -> None:
    response = wire.as_account(account, wire["newOrder"], {"identifiers": [identifier]})
    assert _answer(response, wire.directory_url)[:2] == (400, URN + problem)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"replaces": "\x00"}, "malformed"),
        ({"replaces": "AAAA.\x00"}, "malformed"),
        ({"profile": "\x00"}, "invalidProfile"),
        ({"notBefore": "2030-01-01T00:00:00Z\x00"}, "malformed"),
    ],
)
def test_nul_in_a_new_order_field_is_refused(
    wire: Wire, account: Account, extra: dict[str, str], problem: str
) -> None:
    response = wire.new_order(account, "nul-fields.example.test", **extra)
    assert _answer(response, wire.directory_url)[:2] == (400, URN + problem)


@pytest.mark.parametrize("certificate", ["\x00", "MII\x00"])
def test_nul_in_a_revoked_certificate_is_malformed(
    wire: Wire, account: Account, certificate: str
) -> None:
    response = wire.as_account(account, wire["revokeCert"], {"certificate": certificate})
    assert _answer(response, wire.directory_url)[:2] == (400, URN + "malformed")
