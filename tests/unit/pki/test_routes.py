"""The /.well-known/pki routes in-process (ASGI), over the real service and store."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from certctl.observability.metrics import Metrics
from certctl.pki import PkiState, pki_routes
from certctl.pki.routes import OCSP_GET_PREFIX, OcspFastPath
from certctl.ra.pki import OcspAnswer, PkiService, PublishedCrl
from certctl.ratelimit import TokenBucketLimiter
from tests.unit.pki.support import Ticker, World, load_response, ocsp_request

CRL_PREFIX = "/.well-known/pki/crl/"
OCSP_PREFIX = "/.well-known/pki/ocsp/"
UNKNOWN = "iss-0000000000000000"


class Client:
    """Requests straight into the ASGI app (httpx's ASGI transport), one at a time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("192.0.2.1", 4321))
            async with httpx.AsyncClient(transport=transport, base_url="http://pki.test") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


class WithFastPath:
    """The routes behind the OCSP fast path, as the served app composes them."""

    def __init__(self, state: PkiState) -> None:
        self.fast = OcspFastPath(state)
        self.routes = Starlette(routes=pki_routes(state))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(OCSP_GET_PREFIX):
            answer = self.fast.answer(scope)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.routes(scope, receive, send)


def client_for(
    world: World, service: PkiService | None = None, limiter: TokenBucketLimiter | None = None
) -> tuple[Client, Metrics]:
    metrics = Metrics()
    state = PkiState(service or world.service(), metrics, limiter, world.clock)
    return Client(WithFastPath(state)), metrics


@pytest.fixture
def client(world: World) -> Client:
    return client_for(world)[0]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_crl_download_with_etag_and_cache_control(world: World, client: Client) -> None:
    response = client.get(CRL_PREFIX + world.issuer.id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    assert crl.is_signature_valid(world.issuer.certificate.public_key())  # type: ignore[arg-type]
    assert response.headers["cache-control"] == "public, max-age=300, no-transform"
    etag = response.headers["etag"]
    assert etag.startswith('"') and "last-modified" in response.headers
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get(CRL_PREFIX + world.issuer.id, headers={"If-None-Match": header})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    other = client.get(CRL_PREFIX + world.issuer.id, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    head = client.head(CRL_PREFIX + world.issuer.id)
    assert head.status_code == 200 and head.content == b""


def test_crl_max_age_never_passes_next_update(world: World) -> None:
    crl = world.service().current_crl(world.issuer.id)
    assert crl.max_age(crl.this_update) == 300
    assert crl.max_age(crl.next_update - timedelta(seconds=10)) == 10
    assert crl.max_age(crl.next_update + timedelta(seconds=10)) == 0


def test_unknown_issuer_is_404_everywhere(client: Client) -> None:
    assert client.get(CRL_PREFIX + UNKNOWN).status_code == 404
    assert client.post(OCSP_PREFIX + UNKNOWN, content=b"\x30\x00").status_code == 404
    assert client.get(OCSP_PREFIX + UNKNOWN + "/1a2b").status_code == 404
    assert client.get(OCSP_PREFIX + UNKNOWN + "/MEIw").status_code == 404
    assert client.get(OCSP_PREFIX + UNKNOWN + "/!!").status_code == 404


def test_ocsp_post(world: World, client: Client) -> None:
    cert, _ = world.issue()
    body = ocsp_request(cert, world.issuer.certificate, nonce=b"abcdefgh")
    for headers in ({"Content-Type": "application/ocsp-request"}, {}):
        response = client.post(OCSP_PREFIX + world.issuer.id, content=body, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/ocsp-response"
        assert response.headers["cache-control"] == "no-store"  # a nonce was echoed
        assert load_response(response.content).certificate_status is OCSPCertStatus.GOOD


def test_ocsp_post_refusals(world: World, client: Client) -> None:
    url = OCSP_PREFIX + world.issuer.id
    wrong = client.post(url, content=b"x", headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    assert client.post(url, content=b"\x30" * 8193).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"\x30" * 1000

    assert client.post(url, content=chunks()).status_code == 413  # no Content-Length
    malformed = client.post(url, content=b"\x30\x03\x02\x01\x01")
    assert malformed.status_code == 200
    assert load_response(malformed.content).response_status is (
        OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert client.get(url).status_code == 405


def _request_with_plus_and_slash(world: World, cert: x509.Certificate) -> tuple[bytes, str]:
    for attempt in range(1000):
        der = ocsp_request(cert, world.issuer.certificate, nonce=attempt.to_bytes(4, "big"))
        text = base64.b64encode(der).decode()
        if "+" in text and "/" in text:
            return der, text
    raise AssertionError("no request with both + and / in its base64")


def test_ocsp_get_base64_forms(world: World, client: Client) -> None:
    cert, _ = world.issue()
    _, text = _request_with_plus_and_slash(world, cert)
    base = OCSP_PREFIX + world.issuer.id + "/"
    forms = {
        "raw": text,
        "percent-encoded": urllib.parse.quote(text, safe=""),
        "percent-encoded twice": urllib.parse.quote(urllib.parse.quote(text, safe=""), safe=""),
        "url-safe, unpadded": text.replace("+", "-").replace("/", "_").rstrip("="),
    }
    answers = []
    for form, path in forms.items():
        response = client.get(base + path)
        assert response.status_code == 200, form
        parsed = load_response(response.content)
        assert parsed.certificate_status is OCSPCertStatus.GOOD, form
        assert parsed.serial_number == cert.serial_number
        with pytest.raises(x509.ExtensionNotFound):  # GET: the nonce is not echoed
            parsed.extensions.get_extension_for_class(x509.OCSPNonce)
        assert response.headers["cache-control"].startswith("public, max-age=")
        answers.append(response.content)
    assert len(set(answers)) == 1  # one pre-signed answer served to all


def test_ocsp_get_by_serial(world: World, client: Client) -> None:
    cert, version = world.issue()
    base = OCSP_PREFIX + world.issuer.id + "/"
    for spelled in (version.serial, version.serial.upper(), "00" + version.serial):
        response = client.get(base + spelled)
        assert response.status_code == 200
        assert load_response(response.content).serial_number == cert.serial_number
    unknown = client.get(base + "1234567890abcdef1234")
    assert load_response(unknown.content).response_status is OCSPResponseStatus.UNAUTHORIZED
    assert unknown.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("junk", ["!!", "M" * 20000, "MEIw%ZZ", "a/b/c"])
def test_ocsp_get_malformed(world: World, client: Client, junk: str) -> None:
    response = client.get(OCSP_PREFIX + world.issuer.id + "/" + junk)
    assert response.status_code == 200
    assert load_response(response.content).response_status is (OCSPResponseStatus.MALFORMED_REQUEST)


def test_rate_limit_answers_429_with_retry_after(world: World) -> None:
    ticker = Ticker()
    limiter = TokenBucketLimiter(1, 2, clock=ticker)
    test_client, metrics = client_for(world, limiter=limiter)
    url = CRL_PREFIX + world.issuer.id
    assert [test_client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    refused = test_client.get(OCSP_PREFIX + world.issuer.id + "/1a")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    ticker.advance(1.0)
    assert test_client.get(url).status_code == 200
    assert sample(metrics, "certctl_pki_rate_limited_total") == 2
    assert sample(metrics, "certctl_pki_crl_requests_total") == 3


def test_metrics_count_answers_by_status(world: World) -> None:
    cert, _ = world.issue()
    test_client, metrics = client_for(world)
    base = OCSP_PREFIX + world.issuer.id + "/"
    test_client.get(base + format(cert.serial_number, "x"))
    test_client.get(base + "ffff")
    test_client.get(base + "!!")
    assert sample(metrics, "certctl_pki_ocsp_requests_total", status="good") == 1
    assert sample(metrics, "certctl_pki_ocsp_requests_total", status="unauthorized") == 1
    assert sample(metrics, "certctl_pki_ocsp_requests_total", status="malformed") == 1


class BrokenService(PkiService):
    def current_crl(self, issuer_id: str) -> PublishedCrl:
        raise RuntimeError("database down")

    def answer(self, issuer_id: str, request_der: bytes, *, nonce_allowed: bool) -> OcspAnswer:
        raise RuntimeError("database down")


def test_internal_errors(world: World) -> None:
    broken = BrokenService(
        world.ctx,
        world.ca,
        base_url="http://pki.example",
        crl_interval=world.service().crl_interval,
    )
    test_client, metrics = client_for(world, broken)
    assert test_client.get(CRL_PREFIX + world.issuer.id).status_code == 500
    response = test_client.post(OCSP_PREFIX + world.issuer.id, content=b"\x30\x00")
    assert response.status_code == 200  # an OCSP client reads the status, not the code
    assert load_response(response.content).response_status is OCSPResponseStatus.INTERNAL_ERROR
    assert sample(metrics, "certctl_pki_ocsp_requests_total", status="internal") == 1


# -- the OCSP fast path (pre-signed answers on the event loop) -------------------------


def test_cached_answer_needs_no_service_call(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, version = world.issue()
    service = world.service()
    test_client, metrics = client_for(world, service)
    url = OCSP_PREFIX + world.issuer.id + "/" + version.serial
    first = test_client.get(url)  # a miss: signed by the service, then cached

    def unavailable(*_: object, **__: object) -> OcspAnswer:
        raise AssertionError("the fast path should have answered")

    monkeypatch.setattr(service, "answer_serial", unavailable)
    monkeypatch.setattr(service, "answer", unavailable)
    again = test_client.get(url)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["cache-control"].startswith("public, max-age=")
    assert load_response(again.content).serial_number == cert.serial_number
    assert sample(metrics, "certctl_pki_ocsp_requests_total", status="good") == 2


def test_fast_path_steps_aside_when_the_revocation_feed_is_due(world: World) -> None:
    """A revocation made by another process is not hidden by a cached "good" answer
    for longer than the feed's poll interval."""
    _, version = world.issue()
    test_client, _ = client_for(world)
    url = OCSP_PREFIX + world.issuer.id + "/" + version.serial
    assert load_response(test_client.get(url).content).certificate_status is (OCSPCertStatus.GOOD)
    world.revoke(version)  # in the store and the feed only: as another process would
    world.ticker.advance(1.0)
    assert load_response(test_client.get(url).content).certificate_status is (
        OCSPCertStatus.REVOKED
    )


def test_rate_limit_is_charged_once_per_request(world: World) -> None:
    """A request the fast path cannot answer goes on to the routes without paying twice."""
    _, version = world.issue()
    limiter = TokenBucketLimiter(1, 2, clock=Ticker())
    test_client, _ = client_for(world, limiter=limiter)
    url = OCSP_PREFIX + world.issuer.id + "/" + version.serial
    codes = [test_client.get(url).status_code for _ in range(3)]  # a miss, a hit, refused
    assert codes == [200, 200, 429]


def _raw_ocsp_post(world: World, length: bytes) -> list[dict[str, Any]]:
    """An OCSP POST straight into the ASGI app whose client is gone before any body."""
    app = WithFastPath(PkiState(world.service(), Metrics(), None, world.clock))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": OCSP_PREFIX + world.issuer.id,
        "raw_path": (OCSP_PREFIX + world.issuer.id).encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/ocsp-request"), (b"content-length", length)],
        "client": ("192.0.2.1", 4321),
        "server": ("pki.test", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent


def test_client_leaving_mid_body_is_no_internal_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """An OCSP POST whose client disconnects before its body ends is answered 400 and
    logged as nothing worse: it is not a server error."""
    with caplog.at_level("WARNING"):
        sent = _raw_ocsp_post(world, b"9")
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("length", ["\u00b2".encode("latin-1"), b"+9", b"9 "])
def test_content_length_not_ascii_digits_is_413_unread(world: World, length: bytes) -> None:
    sent = _raw_ocsp_post(world, length)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413


class CacheBrokenService(PkiService):
    def cached_answer(self, issuer_id: str, request: bytes | str) -> OcspAnswer | None:
        raise RuntimeError("a bug in the cache lookup")


def test_a_failing_fast_path_falls_back_to_the_routes(world: World) -> None:
    """The fast path runs outside the routes' error wrapper: whatever goes wrong there,
    the client still gets the routes' OCSP answer, never a bare 500."""
    cert, version = world.issue()
    service = CacheBrokenService(
        world.ctx,
        world.ca,
        base_url="http://pki.example",
        crl_interval=world.service().crl_interval,
    )
    test_client, _ = client_for(world, service)
    response = test_client.get(OCSP_PREFIX + world.issuer.id + "/" + version.serial)
    assert response.status_code == 200
    assert load_response(response.content).serial_number == cert.serial_number
