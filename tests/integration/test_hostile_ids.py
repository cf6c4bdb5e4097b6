"""Hostile ids in ACME paths, over real sockets on SQLite and PostgreSQL.

A hostile-input probe found two ways in: a literal ``*`` path segment (the route table's
own placeholder) reached the handlers with no id at all (a KeyError, answered 500); and a
profile segment that is no profile id was echoed into the ``Link`` header (a 500 for
non-Latin-1, a connection dropped without an answer for CR, LF or NUL, injected link
parameters for ``>;rel=...``). Each must now get the answer any unknown id gets.
"""

from __future__ import annotations

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


def test_unknown_profile_answer_is_the_same(wire: Wire) -> None:
    """For reference: what the segments above answer is what a well-formed unknown id
    answers, index link aside."""
    response = wire.http.get(wire.served.base_url + "/acme/profile/nope/directory")
    doc = assert_problem(
        response, 404, "malformed", wire.served.base_url + "/acme/profile/nope/directory"
    )
    assert doc["detail"] == "no profile 'nope'"
