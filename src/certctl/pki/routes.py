"""The relying-party routes: CRLs (RFC 5280 §5) and OCSP (RFC 6960 Appendix A, RFC 5019).

Not ACME: no nonces, no JWS, no problem documents; anyone may ask. The table below is the
whole surface. Every route goes through one wrapper that applies the per-client rate limit
(seed 003, M-020: an unthrottled responder can be flooded until fail-open relying parties
accept revoked certificates) and turns an unexpected failure into an answer the client
understands, never a bare 500 from an OCSP route. Handlers parse, make one call into
``certctl.ra.pki`` in a worker thread, and render.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from certctl.fastpath import QuickAnswer, QuickRequest, render_raw
from certctl.observability.metrics import Metrics
from certctl.ra.pki import (
    CRL_PATH,
    MAX_OCSP_REQUEST_BYTES,
    OCSP_PATH,
    OcspAnswer,
    PkiService,
    UnknownIssuerError,
    ocsp_error,
)
from certctl.ratelimit import TokenBucketLimiter, client_key

log = logging.getLogger("certctl.pki")

PKIX_CRL = "application/pkix-crl"  # RFC 2585 §4.2
OCSP_REQUEST = "application/ocsp-request"  # RFC 6960 Appendix C
OCSP_RESPONSE = "application/ocsp-response"

# (path, name, methods); HEAD comes with GET.
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (CRL_PATH, "crl", ("GET",)),
    (OCSP_PATH, "ocsp_post", ("POST",)),
    (OCSP_PATH + "/{request:path}", "ocsp_get", ("GET",)),
)

# A serial in hex (colons allowed, as ``certctl cert show`` prints them). A base64 OCSP
# request always starts with "M" (a DER SEQUENCE, 0x30), so the two never overlap.
_SERIAL = re.compile(r"[0-9A-Fa-f:]{1,64}")
# Base64 of the largest request we parse, padding included.
_MAX_GET_CHARS = 4 * (MAX_OCSP_REQUEST_BYTES // 3 + 1)
_MAX_HEADS = 64

Endpoint = Callable[[Request], Awaitable[Response]]
OCSP_GET_PREFIX = OCSP_PATH.removesuffix("{issuer_id}")
# Set in the ASGI scope once the request was charged to the client's rate limit.
_CHARGED = "certctl.pki_rate_charged"


@dataclass(frozen=True)
class PkiState:
    service: PkiService
    metrics: Metrics
    limiter: TokenBucketLimiter | None  # None: no rate limit
    clock: Callable[[], datetime]


def pki_routes(state: PkiState) -> list[Route]:
    handlers: dict[str, Callable[[PkiState, Request], Awaitable[Response]]] = {
        "crl": crl,
        "ocsp_post": ocsp_post,
        "ocsp_get": ocsp_get,
    }
    return [
        Route(path, _wrap(state, name, handlers[name]), methods=list(methods))
        for path, name, methods in ROUTES
    ]


def _refused(state: PkiState, scope: Scope) -> Response | None:
    """The per-client rate limit, charged once per request: a 429, or None to go on."""
    if state.limiter is None or scope.get(_CHARGED):
        return None
    scope[_CHARGED] = True
    client = scope.get("client")
    decision = state.limiter.acquire(client_key(client[0] if client else ""))
    if decision.allowed:
        return None
    state.metrics.pki_rate_limited.inc()
    return PlainTextResponse(
        "too many requests\n",
        status_code=429,
        headers={"Retry-After": decision.retry_after_header, "Cache-Control": "no-store"},
    )


class OcspFastPath:
    """OCSP GETs answered on the event loop from the pre-signed cache (RFC 5019 §2.2.4),
    with no framework routing and no thread hop: the answer a fleet of relying parties asks
    for most. Anything else (a miss, an error answer, a feed poll due) goes the ordinary
    way, through the routes below."""

    def __init__(self, state: PkiState) -> None:
        self.state = state
        # The head of an answer depends only on its max-age and length: kept rendered.
        self._heads: dict[tuple[int, int], bytes] = {}

    def answer(self, scope: Scope) -> Response | None:
        if scope["method"] not in ("GET", "HEAD"):
            return None
        refused = _refused(self.state, scope)
        if refused is not None:
            return refused
        answer = self._cached(scope["path"])
        return _ocsp(self.state, answer) if answer is not None else None

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        """The same, for the HTTP protocol's quick path (``certctl.fastpath``). The cache
        is asked first, so a miss goes the ordinary way without being charged twice."""
        answer = self._cached(request.path)
        if answer is None:
            return None
        scope: Scope = {"client": request.client}
        refused = _refused(self.state, scope)
        if refused is not None:
            return render_raw(refused.status_code, refused.raw_headers, bytes(refused.body))
        key = (answer.max_age, len(answer.der))
        head = self._heads.get(key)
        if head is None:
            response = _ocsp(self.state, answer)
            head = render_raw(response.status_code, response.raw_headers, b"").head
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            self._heads[key] = head
        else:
            _count_ocsp(self.state, answer.status)
        return QuickAnswer(200, head, answer.der)

    def _cached(self, path: str) -> OcspAnswer | None:
        issuer_id, sep, request = path[len(OCSP_GET_PREFIX) :].partition("/")
        if not issuer_id or not sep or not request:
            return None
        text = urllib.parse.unquote(request).strip()
        query: bytes | str | None = text if _SERIAL.fullmatch(text) else _base64(text)
        if query is None:
            return None
        try:
            return self.state.service.cached_answer(issuer_id, query)
        except Exception:
            # Outside the routes' error wrapper: never a bare 500. The routes ask again
            # and give the client an OCSP answer it understands.
            log.exception("OCSP cache lookup failed on %s", path)
            return None


def _wrap(
    state: PkiState, name: str, handler: Callable[[PkiState, Request], Awaitable[Response]]
) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        refused = _refused(state, request.scope)
        if refused is not None:
            return refused
        try:
            return await handler(state, request)
        except UnknownIssuerError:
            return PlainTextResponse("no such issuer\n", status_code=404)
        except ClientDisconnect:
            # The client left while sending its request: nobody reads this answer, and it
            # is no server error.
            return PlainTextResponse("client went away\n", status_code=400)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            if name == "crl":
                return PlainTextResponse("internal error\n", status_code=500)
            # RFC 6960 §2.3: internalError, which OCSP clients understand.
            return _ocsp(state, ocsp_error("internal"))

    return endpoint


async def crl(state: PkiState, request: Request) -> Response:
    state.metrics.pki_crl_requests.inc()
    current = await run_in_threadpool(state.service.current_crl, request.path_params["issuer_id"])
    headers = {
        "ETag": current.etag,
        "Last-Modified": format_datetime(current.this_update.astimezone(UTC), usegmt=True),
        "Cache-Control": f"public, max-age={current.max_age(state.clock())}, no-transform",
    }
    if _etag_matches(request.headers.get("if-none-match"), current.etag):
        return Response(status_code=304, headers=headers)  # RFC 9110 §13.1.2
    return Response(current.der, media_type=PKIX_CRL, headers=headers)


async def ocsp_post(state: PkiState, request: Request) -> Response:
    issuer_id = request.path_params["issuer_id"]
    media_type = request.headers.get("content-type", OCSP_REQUEST).split(";")[0].strip()
    if media_type.lower() != OCSP_REQUEST:
        return PlainTextResponse(f"Content-Type must be {OCSP_REQUEST}\n", status_code=415)
    body = await _read_capped(request, MAX_OCSP_REQUEST_BYTES)
    if body is None:
        return PlainTextResponse("request too large\n", status_code=413)
    answer = await run_in_threadpool(state.service.answer, issuer_id, body, nonce_allowed=True)
    return _ocsp(state, answer)


async def ocsp_get(state: PkiState, request: Request) -> Response:
    issuer_id = request.path_params["issuer_id"]
    # The ASGI path is already percent-decoded; decode again for clients that encode twice
    # (base64 never contains "%", so this cannot damage a request).
    text = urllib.parse.unquote(request.path_params["request"]).strip()
    if _SERIAL.fullmatch(text):
        answer = await run_in_threadpool(state.service.answer_serial, issuer_id, text)
        return _ocsp(state, answer)
    der = _base64(text)
    if der is None:
        # Still a 404 for an unknown issuer, before judging the request.
        await run_in_threadpool(state.service.check_issuer, issuer_id)
        return _ocsp(state, ocsp_error("malformed"))
    answer = await run_in_threadpool(state.service.answer, issuer_id, der, nonce_allowed=False)
    return _ocsp(state, answer)


def _count_ocsp(state: PkiState, status: str) -> None:
    state.metrics.pki_ocsp_requests.labels(status).inc()


def _ocsp(state: PkiState, answer: OcspAnswer) -> Response:
    _count_ocsp(state, answer.status)
    if answer.max_age > 0:
        # RFC 5019 §6.2: let HTTP caches absorb load, never beyond the answer's nextUpdate.
        cache = f"public, max-age={answer.max_age}, no-transform, must-revalidate"
    else:
        cache = "no-store"
    return Response(answer.der, media_type=OCSP_RESPONSE, headers={"Cache-Control": cache})


def _base64(text: str) -> bytes | None:
    """RFC 6960 Appendix A.1: base64 of the DER request (the URL-safe alphabet and missing
    padding are accepted too); None when it is not base64 at all."""
    if not text or len(text) > _MAX_GET_CHARS:
        return None
    standard = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is known to exceed ``limit`` (declared or sent)."""
    declared = request.headers.get("content-length")
    # isascii too: str.isdigit() takes "²" (latin-1 0xB2), which int() refuses.
    if declared is not None and (
        not (declared.isascii() and declared.isdigit()) or int(declared) > limit
    ):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 If-None-Match: weak comparison, ``*`` matches anything."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)
