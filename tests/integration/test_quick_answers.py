"""The protocol's quick answers are the ordinary route's answers, over real TLS.

The directory, newNonce, cached OCSP answers and /health are written straight from the
HTTP protocol (certctl.fastpath); a GET that carries ``Content-Length: 0`` goes the
ordinary way through ASGI and the dispatcher (tests/unit/cli/test_quick_protocol.py
shows both). The two must agree on status, header fields and body, bar the Date field and
the nonce's value, for GET and HEAD; and the quick nonce must be as good as any other.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
import urllib.parse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.integration.test_pki import issue
from tests.integration.wire import Wire
from tests.support.server import ServedCertctl

VARYING = {"date", "replay-nonce"}
EXPECTED = {
    ("GET", "/acme/directory"): 200,
    ("HEAD", "/acme/directory"): 405,
    ("GET", "/acme/new-nonce"): 204,
    ("HEAD", "/acme/new-nonce"): 200,
    ("GET", "/health"): 200,
    ("HEAD", "/health"): 200,
}


@pytest.fixture(scope="module")
def database_url() -> None:
    """The quick path reads no store: SQLite only."""
    return None


@pytest.fixture(scope="module")
def tls(served: ServedCertctl) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(served.root_pem_path))


Answer = tuple[int, list[tuple[str, str]], bytes]


def _ask(
    served: ServedCertctl, tls: ssl.SSLContext, method: str, path: str, *, ordinary: bool
) -> Answer:
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=tls, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if ordinary:
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        headers = sorted((k.lower(), v) for k, v in response.getheaders())
        return response.status, headers, body
    finally:
        conn.close()


def _comparable(answer: Answer) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = answer
    return status, [(k, "*" if k in VARYING else v) for k, v in headers], body


def _same_both_ways(served: ServedCertctl, tls: ssl.SSLContext, method: str, path: str) -> Answer:
    quick = _ask(served, tls, method, path, ordinary=False)
    ordinary = _ask(served, tls, method, path, ordinary=True)
    assert _comparable(quick) == _comparable(ordinary), path
    return quick


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["/acme/directory", "/acme/new-nonce", "/health"])
def test_quick_answers_match_the_ordinary_route(
    served: ServedCertctl, tls: ssl.SSLContext, method: str, path: str
) -> None:
    status, headers, body = _same_both_ways(served, tls, method, path)
    fields = dict(headers)
    # RFC 8555 §7.2: HEAD newNonce 200, GET 204; the directory is a GET resource only.
    assert status == EXPECTED[method, path]
    if method == "HEAD":
        assert body == b""
    if path == "/acme/new-nonce":
        assert fields["cache-control"] == "no-store"
    if path.startswith("/acme/"):
        assert fields["link"] == f'<{served.base_url}/acme/directory>;rel="index"'
        assert len(fields["replay-nonce"]) == 54


def test_the_directory_body_names_this_server(served: ServedCertctl, tls: ssl.SSLContext) -> None:
    _, _, body = _same_both_ways(served, tls, "GET", "/acme/directory")
    doc = json.loads(body)
    assert doc["newNonce"] == f"{served.base_url}/acme/new-nonce"
    assert doc["newOrder"] == f"{served.base_url}/acme/new-order"


def test_a_profile_directory_matches_and_an_unknown_one_is_refused(
    served: ServedCertctl, tls: ssl.SSLContext
) -> None:
    status, _, body = _same_both_ways(served, tls, "GET", "/acme/profile/default/directory")
    assert status == 200
    assert json.loads(body)["newAccount"].endswith("/acme/profile/default/new-account")
    status, headers, _ = _same_both_ways(served, tls, "GET", "/acme/profile/nope/directory")
    assert status == 404
    assert dict(headers)["content-type"] == "application/problem+json"


def test_other_methods_on_the_directory_are_refused(
    served: ServedCertctl, tls: ssl.SSLContext
) -> None:
    quick = _ask(served, tls, "DELETE", "/acme/directory", ordinary=False)
    assert quick[0] == 405


def test_quick_nonces_are_accepted_once(
    served: ServedCertctl, tls: ssl.SSLContext, wire: Wire
) -> None:
    account = wire.new_account()
    for path in ("/acme/new-nonce", "/acme/directory"):
        _, headers, _ = _ask(served, tls, "HEAD", path, ordinary=False)
        nonce = dict(headers)["replay-nonce"]
        first = wire.signed(account.key, account.url, None, kid=account.url, nonce=nonce)
        assert first.status_code == 200, first.text
        again = wire.signed(account.key, account.url, None, kid=account.url, nonce=nonce)
        assert again.status_code == 400
        assert again.json()["type"] == "urn:ietf:params:acme:error:badNonce"


def test_cached_ocsp_answers_match_the_ordinary_route(
    served: ServedCertctl, tls: ssl.SSLContext, tmp_path: Path
) -> None:
    leaf = issue(served, tmp_path, "quick.pki.example.test")
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf.cert, leaf.issuer, hashes.SHA1())  # noqa: S303 - RFC 5019
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    path = urllib.parse.urlsplit(leaf.ocsp_url).path
    encoded = urllib.parse.quote(base64.b64encode(request).decode(), safe="")
    for url in (f"{path}/{encoded}", f"{path}/{leaf.cert.serial_number:x}"):
        _ask(served, tls, "GET", url, ordinary=True)  # fills the cache
        status, headers, body = _same_both_ways(served, tls, "GET", url)
        assert status == 200
        assert dict(headers)["content-type"] == "application/ocsp-response"
        parsed = ocsp.load_der_ocsp_response(body)
        assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert parsed.serial_number == leaf.cert.serial_number


# httpx's default keepalive_expiry: its pool reuses a connection idle this long.
CLIENT_POOL_EXPIRY_S = 5.0


def test_a_connection_idle_as_long_as_a_client_pool_keeps_it_is_still_served(
    served: ServedCertctl, tls: ssl.SSLContext
) -> None:
    # With the server's idle timeout equal to the pool's, the pool sends its next
    # request just as the server closes, and a POST lost that way is not retried.
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=tls, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"ok"
            assert response.getheader("connection") != "close"
            time.sleep(CLIENT_POOL_EXPIRY_S + 1)
        conn.request("GET", "/acme/directory")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
