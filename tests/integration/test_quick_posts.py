"""POSTs answered from the protocol's quick path are the dispatcher's answers, over TLS.

A POST with a declared Content-Length is taken by the HTTP protocol (certctl.wfe.quick):
on SQLite with rate limits in memory and CERTCTL_SQLITE_SYNCHRONOUS=NORMAL the POSTs of
an issuance (routes.INLINE_POSTS) are answered on the event loop, otherwise (durable
SQLite commits, PostgreSQL) every POST on the handler threads; the same
request with a chunked body goes through ASGI and the dispatcher. Each request below is
sent both ways, each time signed afresh with a nonce of its own, and the answers must
agree on status, header fields and body, bar the Date field and the nonce's value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.integration.servers import serve
from tests.integration.wire import (
    JOSE,
    Account,
    Key,
    RawResponse,
    Wire,
    b64,
    csr_der,
    flattened,
    payload_bytes,
    raw_exchange,
)
from tests.support.postgres import fresh_database
from tests.support.server import ServedCertctl

VARYING = {"date", "replay-nonce"}


def _send(served: ServedCertctl, url: str, body: bytes, *, chunked: bool) -> RawResponse:
    path = url.removeprefix(served.base_url)
    host = served.base_url.split("://", 1)[1]
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JOSE}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        half = len(body) // 2
        chunks = [
            b"%x\r\n%s\r\n" % (half, body[:half]),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]),
        ]
    else:
        head += f"Content-Length: {len(body)}\r\n\r\n"
        chunks = [body]
    return raw_exchange(served, head.encode("ascii"), chunks)


Comparable = tuple[int, list[tuple[str, str]], bytes]


def _comparable(response: RawResponse) -> Comparable:
    fields = sorted(
        (name, "*" if name in VARYING else value)
        for name, values in response.headers.items()
        for value in values
    )
    return response.status, fields, response.body


def _both_ways(served: ServedCertctl, url: str, make_body: Callable[[], bytes]) -> RawResponse:
    """Send a fresh body to ``url`` quick and ordinary; assert the answers agree."""
    quick = _send(served, url, make_body(), chunked=False)
    ordinary = _send(served, url, make_body(), chunked=True)
    assert _comparable(quick) == _comparable(ordinary), url
    assert len(quick.header("replay-nonce")) == 54
    return quick


def _signed(
    wire: Wire, key: Key, url: str, payload: dict[str, Any] | None, kid: str | None
) -> Callable[[], bytes]:
    def make() -> bytes:
        header = wire.header(key, url, kid=kid)
        return json.dumps(flattened(key, header, payload_bytes(payload))).encode()

    return make


@pytest.fixture(scope="module", params=["FULL", "NORMAL"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    """Both SQLite modes: FULL answers on the handler threads, NORMAL on the event loop
    (PostgreSQL ignores the setting and runs on the threads both times). Each server has
    a database of its own: two CAs cannot share one."""
    env = {"CERTCTL_SQLITE_SYNCHRONOUS": request.param}
    with ExitStack() as stack:
        url = database_url
        if url is not None and request.param != "FULL":
            url = stack.enter_context(fresh_database())
        yield stack.enter_context(serve(request, tmp_path_factory, url, env=env))


@pytest.fixture(scope="module")
def issued(served: ServedCertctl) -> Iterator[tuple[Wire, Account, str, dict[str, Any]]]:
    wire = Wire(served)
    try:
        account = wire.new_account()
        order_url, order, _ = wire.issue(account, "quick-posts.example.com")
        yield wire, account, order_url, order
    finally:
        wire.close()


def test_reads_of_an_issued_order_match(
    served: ServedCertctl, issued: tuple[Wire, Account, str, dict[str, Any]]
) -> None:
    wire, account, order_url, order = issued
    answer = _both_ways(served, order_url, _signed(wire, account.key, order_url, None, account.url))
    assert answer.status == 200
    assert json.loads(answer.body)["status"] == "valid"
    cert_url = order["certificate"]
    answer = _both_ways(served, cert_url, _signed(wire, account.key, cert_url, None, account.url))
    assert answer.status == 200
    assert answer.body.startswith(b"-----BEGIN CERTIFICATE-----")
    authz_url = order["authorizations"][0]
    answer = _both_ways(served, authz_url, _signed(wire, account.key, authz_url, None, account.url))
    assert json.loads(answer.body)["status"] == "valid"
    account_url = account.url
    answer = _both_ways(
        served, account_url, _signed(wire, account.key, account_url, None, account.url)
    )
    assert json.loads(answer.body)["status"] == "valid"


def test_refusals_match(
    served: ServedCertctl, issued: tuple[Wire, Account, str, dict[str, Any]]
) -> None:
    wire, account, _, order = issued
    # A finalize of a valid order (RFC 8555 §7.4: orderNotReady).
    finalize = order["finalize"]
    csr = {"csr": b64(csr_der(Key.ec256(), ["quick-posts.example.com"]))}
    answer = _both_ways(served, finalize, _signed(wire, account.key, finalize, csr, account.url))
    assert answer.status == 403
    assert json.loads(answer.body)["type"].endswith(":orderNotReady")
    # A kid that names no account.
    stranger = f"{account.url}x"
    new_order = wire["newOrder"]
    ids = {"identifiers": [{"type": "dns", "value": "x.example.com"}]}
    answer = _both_ways(served, new_order, _signed(wire, Key.ec256(), new_order, ids, stranger))
    assert json.loads(answer.body)["type"].endswith(":accountDoesNotExist")
    # Not a JWS at all, and a JWS signed by another key than the account's.
    answer = _both_ways(served, new_order, lambda: b"{not json")
    assert answer.status == 400
    answer = _both_ways(served, new_order, _signed(wire, Key.ec256(), new_order, ids, account.url))
    assert answer.status in (400, 401, 403)
    assert answer.header("content-type") == "application/problem+json"


def test_an_existing_key_registering_again_matches(
    served: ServedCertctl, issued: tuple[Wire, Account, str, dict[str, Any]]
) -> None:
    wire, account, _, _ = issued
    url = wire["newAccount"]
    answer = _both_ways(
        served, url, _signed(wire, account.key, url, {"onlyReturnExisting": True}, None)
    )
    assert answer.status == 200
    assert answer.header("location") == account.url


def test_a_body_in_pieces_is_gathered(served: ServedCertctl, wire: Wire) -> None:
    account = wire.new_account()
    url = wire["newOrder"]
    ids = {"identifiers": [{"type": "dns", "value": "pieces.example.com"}]}
    body = _signed(wire, account.key, url, ids, account.url)()
    path = url.removeprefix(served.base_url)
    host = served.base_url.split("://", 1)[1]
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JOSE}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    pieces = [body[i : i + 40] for i in range(0, len(body), 40)]
    answer = raw_exchange(served, head.encode("ascii"), pieces, pause=0.05)
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["status"] == "ready"
