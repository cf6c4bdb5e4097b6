"""The ACME route table, readable in one screen, and the one dispatcher every route uses.

Each path exists twice: under ``/acme/profile/{profile_id}`` and under the ``/acme``
shorthand for ``CERTCTL_ACME_SERVER_DEFAULT_PROFILE_ID``. The dispatcher owns the cross-
cutting parts: method check, Content-Type (RFC 8555 §6.2: application/jose+json), body
cap before reading, the thread hop, error rendering, metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType, not_found
from certctl.observability.metrics import Metrics
from certctl.ra import RegistrationAuthority
from certctl.wfe import handlers as h
from certctl.wfe.render import INTERNAL, problem_response
from certctl.wfe.urls import AcmeUrls

log = logging.getLogger("certctl.wfe")

# (path suffix, metric name, {method: handler})
ROUTES: tuple[tuple[str, str, dict[str, h.Handler]], ...] = (
    ("/directory", "directory", {"GET": h.directory}),
    ("/new-nonce", "new_nonce", {"GET": h.new_nonce, "HEAD": h.new_nonce}),
    ("/new-account", "new_account", {"POST": h.new_account}),
    ("/account/{account_id}", "update_account", {"POST": h.account}),
    ("/account/{account_id}/orders", "list_orders", {"POST": h.orders}),
    ("/new-order", "new_order", {"POST": h.new_order}),
    ("/order/{order_id}", "order_read", {"POST": h.order}),
    ("/order/{order_id}/finalize", "finalize_order", {"POST": h.finalize}),
    ("/authz/{authz_id}", "authz_read", {"POST": h.authz}),
    ("/challenge/{challenge_id}", "challenge_respond", {"POST": h.challenge}),
    ("/cert/{cert_id}", "cert_download", {"POST": h.certificate}),
    ("/new-authz", "new_authz", {"POST": h.new_authz}),
    ("/key-change", "key_change", {"POST": h.key_change}),
    ("/revoke-cert", "revoke_cert", {"POST": h.revoke_cert}),
    ("/renewal-info/{cert_id}", "renewal_info", {"GET": h.renewal_info}),
)

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
JOSE = "application/jose+json"
BODY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class WfeState:
    ra: RegistrationAuthority
    settings: AcmeServerSettings
    metrics: Metrics


def acme_routes(state: WfeState) -> list[Route]:
    routes: list[Route] = []
    for suffix, op, methods in ROUTES:
        endpoint = _endpoint(state, op, methods)
        routes.append(Route("/acme/profile/{profile_id}" + suffix, endpoint, methods=_ALL_METHODS))
        routes.append(Route("/acme" + suffix, endpoint, methods=_ALL_METHODS))
    # Last, so only paths no route above claims land here.
    unknown = _unknown_endpoint(state)
    routes.append(Route("/acme/profile/{profile_id}/{rest:path}", unknown, methods=_ALL_METHODS))
    routes.append(Route("/acme/{rest:path}", unknown, methods=_ALL_METHODS))
    return routes


def _unknown_endpoint(state: WfeState) -> Callable[[Request], Awaitable[Response]]:
    """RFC 8555 §6.5, §7.1: a 404 is an ACME response too, with a fresh Replay-Nonce and
    the index link, so a client can recover without another newNonce round trip."""

    async def endpoint(request: Request) -> Response:
        urls, _ = _urls(request, state)
        return _problem(state, not_found("no such ACME resource"), urls)

    return endpoint


def _urls(request: Request, state: WfeState) -> tuple[AcmeUrls, str]:
    base = f"{request.url.scheme}://{request.url.netloc}"
    profile_id = request.path_params.get("profile_id")
    if profile_id is not None:
        return AcmeUrls(base, f"/acme/profile/{profile_id}"), profile_id
    return AcmeUrls(base, "/acme"), state.settings.default_profile_id


async def _read_body(request: Request, limit: int) -> bytes:
    """Refuse oversized bodies before reading them (declared length), then while reading."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise AcmeError(ProblemType.MALFORMED, f"request body over {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    try:
        # A client that trickles its body is cut off: the body must arrive in time.
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise AcmeError(
                        ProblemType.MALFORMED, f"request body over {limit} bytes", status=413
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise AcmeError(ProblemType.MALFORMED, "request body too slow", status=408) from None
    return b"".join(chunks)


def _endpoint(
    state: WfeState, op: str, methods: dict[str, h.Handler]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = perf_counter()
        urls, profile_id = _urls(request, state)
        try:
            handler = methods.get(request.method)
            if handler is None:
                raise AcmeError(
                    ProblemType.METHOD_NOT_ALLOWED,
                    f"{request.method} is not allowed here",
                    headers={"Allow": ", ".join(methods)},
                )
            if not profile_id:
                raise AcmeError(
                    ProblemType.USER_ACTION_REQUIRED,
                    "no default ACME profile is configured; use /acme/profile/<id>/directory",
                )
            body = b""
            if request.method == "POST":
                media_type = request.headers.get("content-type", "").split(";")[0].strip()
                if media_type.lower() != JOSE:
                    raise AcmeError(
                        ProblemType.UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {JOSE}"
                    )
                body = await _read_body(request, state.settings.max_body_bytes)
            response = await run_in_threadpool(
                _run, state, handler, request, urls, profile_id, body
            )
            failed = False
        except AcmeError as err:
            response, failed = _problem(state, err, urls), True
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            response, failed = _problem(state, INTERNAL, urls), True
        state.metrics.observe(op, perf_counter() - started, failed=failed)
        return response

    return endpoint


def _problem(state: WfeState, err: AcmeError, urls: AcmeUrls) -> Response:
    return problem_response(err, nonce=state.ra.new_nonce(), directory_url=urls.directory())


def _run(
    state: WfeState,
    handler: h.Handler,
    request: Request,
    urls: AcmeUrls,
    profile_id: str,
    body: bytes,
) -> Response:
    profile = state.ra.acme_profile(profile_id)
    call = h.Call(
        ra=state.ra,
        settings=state.settings,
        metrics=state.metrics,
        profile=profile,
        urls=urls,
        request_url=str(request.url),
        method=request.method,
        body=body,
        params=dict(request.path_params),
        query=dict(request.query_params),
        client_address=request.client.host if request.client else None,
    )
    return handler(call)
