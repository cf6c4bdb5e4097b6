"""The ACME route table, readable in one screen, and the one dispatcher every route uses.

Each path exists twice: under ``/acme/profile/{profile_id}`` and under the ``/acme``
shorthand for ``CERTCTL_ACME_SERVER_DEFAULT_PROFILE_ID``. The dispatcher owns the cross-
cutting parts: method check, Content-Type (RFC 8555 §6.2: application/jose+json), body
cap before reading, the thread hop, error rendering, metrics.

It is plain ASGI, not a framework router: the ACME surface is the hot path (every
request of every client), so a path is resolved with one dictionary lookup and no
per-request framework objects are built. Requests that need the store or signature
checks run in a worker thread; the directory and newNonce are answered on the event loop
when the profile is cached (nothing there blocks).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import parse_qsl

from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from certctl.config import AcmeServerSettings, is_valid_profile_id
from certctl.domain.errors import AcmeError, ProblemType, not_found
from certctl.domain.model import Profile
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

JOSE = "application/jose+json"
BODY_TIMEOUT_S = 15.0
PREFIX = "/acme/"
PROFILE_PREFIX = "/acme/profile/"
# Handlers that touch the store run on a small pool of threads. Their work is CPU under
# one GIL, except for database round trips: more threads than can overlap those only add
# GIL hand-offs and context switches (measured: 20 threads cost about 20 % more CPU per
# certificate than 4 at concurrency 32 on SQLite). SQLite runs one writer at a time in
# this process; PostgreSQL round trips overlap, so it gets a few more. Either stays
# within the database pool (10 + 10 overflow), so a burst queues for a thread, never for
# a connection inside one. CERTCTL_ACME_SERVER_HANDLER_THREADS overrides it.
SQLITE_HANDLER_THREADS = 4
POSTGRES_HANDLER_THREADS = 8
# Answered on the event loop when the profile is cached: no store, no signature check.
INLINE = frozenset({"directory", "new_nonce"})
# POSTs the protocol may answer on the event loop, body and all (certctl.wfe.quick), when
# the store is SQLite and rate limits are kept in memory: what they wait on is local
# (SQLite pages, this process's write lock), never the network. Challenge responses,
# key changes, revocations and new-authz stay on the threads: they start validations,
# sign CRLs or are rare.
INLINE_POSTS = frozenset(
    {
        "new_account",
        "update_account",
        "list_orders",
        "new_order",
        "order_read",
        "finalize_order",
        "authz_read",
        "cert_download",
    }
)


def handler_threads(configured: int, *, sqlite: bool) -> int:
    """The handler pool's size: ``configured`` unless 0, else the database's default."""
    if configured:
        return configured
    return SQLITE_HANDLER_THREADS if sqlite else POSTGRES_HANDLER_THREADS


@dataclass(frozen=True)
class WfeState:
    ra: RegistrationAuthority
    settings: AcmeServerSettings
    metrics: Metrics
    threads: int = SQLITE_HANDLER_THREADS
    # INLINE_POSTS are answered on the event loop (see there); False sends every POST to
    # the handler threads.
    inline_posts: bool = False


@dataclass(frozen=True)
class Route:
    op: str
    methods: dict[str, h.Handler]
    param: str | None  # the name of the one path parameter, if any


def _pattern(suffix: str) -> tuple[tuple[str, ...], str | None]:
    """ "/order/{order_id}/finalize" -> (("order", "*", "finalize"), "order_id")."""
    parts: list[str] = []
    param = None
    for part in suffix.strip("/").split("/"):
        if part.startswith("{"):
            param = part[1:-1]
            parts.append("*")
        else:
            parts.append(part)
    return tuple(parts), param


_TABLE: dict[tuple[str, ...], Route] = {}
for _suffix, _op, _methods in ROUTES:
    _parts, _param = _pattern(_suffix)
    _TABLE[_parts] = Route(_op, _methods, _param)


def resolve(path: str, default_profile: str) -> tuple[str, str, Route | None, dict[str, str]]:
    """(URL prefix, profile id, route or None for unknown, path params) of an ACME path.

    Path parameters match one non-empty segment, as the route table's ``{name}`` says.
    A profile segment that is no profile id keeps the shorthand's prefix: the prefix goes
    into every answer's ``Link`` (RFC 8555 §7.1), and a segment is any decoded text (CR,
    LF, NUL, non-Latin-1, or ``>;rel=...`` to inject link parameters). Such a profile id
    names no profile (``run``).
    """
    if path.startswith(PROFILE_PREFIX):
        profile_id, _, rest = path[len(PROFILE_PREFIX) :].partition("/")
        if profile_id:
            prefix = PROFILE_PREFIX + profile_id if is_valid_profile_id(profile_id) else "/acme"
        else:  # "/acme/profile//x": no profile named; an unknown path of the shorthand
            prefix, profile_id, rest = "/acme", default_profile, ""
    else:
        prefix, profile_id, rest = "/acme", default_profile, path[len(PREFIX) :]
    parts = tuple(rest.split("/"))
    route = _TABLE.get(parts)
    # Only a route without a parameter matches as it stands: a literal "*" segment is the
    # table's placeholder, not an id, and is matched below as the id "*" (which names
    # nothing, like any other unknown id).
    if route is not None and route.param is None:
        return prefix, profile_id, route, {}
    if len(parts) in (2, 3) and parts[1]:
        route = _TABLE.get((parts[0], "*", *parts[2:]))
        if route is not None and route.param is not None:
            return prefix, profile_id, route, {route.param: parts[1]}
    return prefix, profile_id, None, {}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class AcmeApp:
    """The ASGI application of everything under ``/acme/``."""

    def __init__(self, state: WfeState) -> None:
        self.state = state
        self._threads = ThreadPoolExecutor(state.threads, thread_name_prefix="acme")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(scope, receive)
        await response(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        started = perf_counter()
        state = self.state
        prefix, profile_id, route, params = resolve(
            scope["path"], state.settings.default_profile_id
        )
        url = URL(scope=scope)
        urls = AcmeUrls(f"{url.scheme}://{url.netloc}", prefix)
        if route is None:
            # RFC 8555 §6.5, §7.1: a 404 is an ACME response too, with a fresh
            # Replay-Nonce and the index link, so a client recovers without a newNonce.
            return _problem(state, not_found("no such ACME resource"), urls)
        method: str = scope["method"]
        try:
            handler = route.methods.get(method)
            if handler is None:
                raise AcmeError(
                    ProblemType.METHOD_NOT_ALLOWED,
                    f"{method} is not allowed here",
                    headers={"Allow": ", ".join(route.methods)},
                )
            if not profile_id:
                raise AcmeError(
                    ProblemType.USER_ACTION_REQUIRED,
                    "no default ACME profile is configured; use /acme/profile/<id>/directory",
                )
            body = b""
            if method == "POST":
                if not is_jose(_header(scope, b"content-type")):
                    raise AcmeError(
                        ProblemType.UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {JOSE}"
                    )
                body = await _read_body(scope, receive, state.settings.max_body_bytes)
            client = scope.get("client")
            request = Request(
                method=method,
                path=scope["path"],
                url=str(url),
                urls=urls,
                profile_id=profile_id,
                params=params,
                query=scope.get("query_string", b""),
                client_address=client[0] if client else None,
                body=body,
            )
            cached = state.ra.cached_acme_profile(profile_id) if route.op in INLINE else None
            if cached is not None:
                response = run(state, handler, request, cached)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(run_held, state, handler, request)
                response = await loop.run_in_executor(self._threads, call)
            failed = False
        except AcmeError as err:
            response, failed = _problem(state, err, urls), True
        except Exception:
            log.exception("internal error on %s %s", method, scope["path"])
            response, failed = _problem(state, INTERNAL, urls), True
        state.metrics.observe(route.op, perf_counter() - started, failed=failed)
        return response

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The handler threads (the protocol's quick path runs POSTs there too)."""
        return self._threads

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Refuse oversized bodies before reading them (declared length), then while reading."""
    declared = _header(scope, b"content-length")
    # isascii too: str.isdigit() takes "²" (latin-1 0xB2), which int() refuses.
    if declared is not None and (
        not (declared.isascii() and declared.isdigit()) or int(declared) > limit
    ):
        raise AcmeError(ProblemType.MALFORMED, f"request body over {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    try:
        # A client that trickles its body is cut off: the body must arrive in time.
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise AcmeError(ProblemType.MALFORMED, "client went away", status=400)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise AcmeError(
                        ProblemType.MALFORMED, f"request body over {limit} bytes", status=413
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise AcmeError(ProblemType.MALFORMED, "request body too slow", status=408) from None
    return b"".join(chunks)


def respond_sync(
    state: WfeState,
    route: Route,
    request: Request,
    profile: Profile | None,
    started: float,
    *,
    on_loop: bool,
) -> Response:
    """A POST's whole answer on the calling thread (the event loop for ``INLINE_POSTS``
    when ``WfeState.inline_posts``, else a handler thread): the quick path's twin of
    ``AcmeApp.respond`` once the route and body are known (the profile too, if cached).
    On a handler thread it also waits for the disk (``run_held``); on the event loop
    the caller holds the answer instead."""
    runner = run if on_loop else run_held
    try:
        response, failed = runner(state, route.methods["POST"], request, profile), False
    except AcmeError as err:
        response, failed = _problem(state, err, request.urls), True
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response, failed = _problem(state, INTERNAL, request.urls), True
    state.metrics.observe(route.op, perf_counter() - started, failed=failed)
    return response


def problem_for(
    state: WfeState, route: Route, err: AcmeError, request: Request, started: float
) -> Response:
    """The problem answer to a request refused before its handler ran, counted as
    ``AcmeApp.respond`` counts one."""
    state.metrics.observe(route.op, perf_counter() - started, failed=True)
    return _problem(state, err, request.urls)


def _problem(state: WfeState, err: AcmeError, urls: AcmeUrls) -> Response:
    return problem_response(err, nonce=state.ra.new_nonce(), directory_url=urls.directory())


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler needs of an ACME request, whichever way it came in (ASGI, or the
    protocol's quick path: certctl.wfe.quick)."""

    method: str
    path: str
    url: str  # as the client addressed it: the JWS "url" must equal it (RFC 8555 §6.4)
    urls: AcmeUrls
    profile_id: str
    params: dict[str, str]
    query: bytes
    client_address: str | None
    body: bytes


def is_jose(content_type: str | None) -> bool:
    """RFC 8555 §6.2: a POST's Content-Type is application/jose+json (parameters aside)."""
    return (content_type or "").split(";")[0].strip().lower() == JOSE


def run_held(
    state: WfeState, handler: h.Handler, request: Request, profile: Profile | None = None
) -> Response:
    """``run`` on a handler thread: the store's reads and writes note what must reach the
    disk and the thread waits for it once, before the answer (refusals too: they can
    depend on what was read), not after every transaction (certctl.storage.durable). A
    sync that fails raises, and the caller answers 500 as for any internal error."""
    with state.ra.hold_commits() as held:
        try:
            return run(state, handler, request, profile)
        finally:
            held.wait()


def run(state: WfeState, handler: h.Handler, request: Request, profile: Profile | None) -> Response:
    """The handler's answer; ``profile`` when the caller has it, else read (or cached)."""
    if profile is None:
        profile = _profile(state, request.profile_id)
    call = h.Call(
        ra=state.ra,
        settings=state.settings,
        metrics=state.metrics,
        profile=profile,
        urls=request.urls,
        request_url=request.url,
        method=request.method,
        body=request.body,
        params=request.params,
        query=dict(parse_qsl(request.query.decode("latin-1"), keep_blank_values=True))
        if request.query
        else {},
        client_address=request.client_address,
    )
    return handler(call)


def _profile(state: WfeState, profile_id: str) -> Profile:
    """The request's profile (RegistrationAuthority.acme_profile). An id no profile can
    have (ra.profiles checks the syntax when one is made) is answered as an unknown one
    is (ra.profiles.get_profile) without asking the store: PostgreSQL refuses a NUL in
    text, which would be a 500."""
    if not is_valid_profile_id(profile_id):
        raise not_found(f"no profile {profile_id[:64]!r}")
    return state.ra.acme_profile(profile_id)
