"""ACME requests answered from the HTTP protocol (``certctl.fastpath``).

Every ACME client starts with the directory and newNonce, and a fleet's clients ask for
them most, so they are answered with no ASGI cycle, no thread and no store: the profile
must be in the RA's cache (fresh, enabled), and the directory's body is kept per URL base
and profile. Anything this cannot answer the same way the dispatcher would (an unknown
path, another method, a profile not cached) is left to the dispatcher, which stays the
reference: the answer here is what ``handlers.directory`` and ``handlers.new_nonce``
send, with a fresh nonce each time (RFC 8555 §7.2).

POSTs are taken here too, and the same handler runs through ``routes.respond_sync``
without the ASGI cycle: on the event loop for the POSTs of an issuance
(``routes.INLINE_POSTS``) when the dispatcher's state allows it (``WfeState.inline_posts``:
SQLite, rate limits in memory), on the handler threads otherwise (measured: the ASGI cycle
and the thread hop were together about a fifth of the server's CPU per certificate).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from concurrent.futures import Executor
from time import perf_counter
from typing import Any, NamedTuple

from starlette.datastructures import URL

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Profile
from certctl.fastpath import QuickAnswer, QuickRequest, render, render_raw
from certctl.ra.service import Hold
from certctl.wfe import handlers as h
from certctl.wfe.routes import (
    BODY_TIMEOUT_S,
    INLINE,
    INLINE_POSTS,
    Request,
    Route,
    WfeState,
    is_jose,
    problem_for,
    resolve,
    respond_sync,
)
from certctl.wfe.urls import AcmeUrls

# Host values come from clients: the caches keyed by them are bounded.
_MAX_CACHED = 256
# Where a plan's head takes the nonce: no header value can contain it (they are ASCII).
_NONCE_MARK = "\x00nonce\x00"
_UNPLANNED: Any = object()


class _Plan(NamedTuple):
    """A directory or newNonce answer for one request line and Host, the nonce aside."""

    op: str
    profile_id: str
    profile: Profile  # as cached when the plan was made: another object means changed
    status: int
    head: tuple[bytes, bytes]  # the head before and after the nonce's value
    body: bytes


class QuickAcme:
    def __init__(self, state: WfeState, executor: Executor | None = None) -> None:
        self.state = state
        self.executor = executor  # the handler threads, for POSTs not answered inline
        self._bases: dict[tuple[str, bytes | None, object], str] = {}
        self._directories: dict[tuple[str, str], tuple[Profile, bytes]] = {}
        self._plans: dict[tuple[str, str, str, bytes | None, object], _Plan | None] = {}

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        started = perf_counter()
        state = self.state
        key = (request.method, request.path, request.scheme, request.host, request.server)
        plan = self._plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plan(request, key)
        elif plan is not None:
            profile = state.ra.cached_acme_profile(plan.profile_id)
            if profile is None:
                return None  # not cached (or disabled): the dispatcher reads it
            if plan.profile is not profile:
                plan = self._plan(request, key)
        if plan is None:
            return None
        before, after = plan.head
        head = b"%s%s%s" % (before, state.ra.new_nonce().encode("ascii"), after)
        state.metrics.observe(plan.op, perf_counter() - started, failed=False)
        return QuickAnswer(plan.status, head, plan.body)

    def _plan(
        self, request: QuickRequest, key: tuple[str, str, str, bytes | None, object]
    ) -> _Plan | None:
        """What answer_now sends for ``request``'s line and Host, kept until the profile
        object changes (the RA replaces it whenever it reloads it, about once a second).
        None for what the dispatcher answers (kept too: the route table does not change)."""
        state = self.state
        prefix, profile_id, route, _ = resolve(request.path, state.settings.default_profile_id)
        plan = None
        if route is not None and route.op in INLINE and request.method in route.methods:
            profile = state.ra.cached_acme_profile(profile_id) if profile_id else None
            if profile is None:
                return None  # not kept: the profile may be cached by the next request
            base = self._base(request)
            headers = [("link", f'<{base}{prefix}/directory>;rel="index"')]
            if route.op == "directory":
                body = self._directory(base, prefix, profile)
                headers += [
                    ("cache-control", h.DIRECTORY_CACHE_CONTROL),
                    ("content-type", "application/json"),
                ]
                status = 200
            else:
                body = b""
                headers.append(("cache-control", "no-store"))
                status = h.nonce_status(request.method)
            # The nonce comes first, as handlers.directory and handlers.new_nonce send it.
            rendered = render(status, [("replay-nonce", _NONCE_MARK), *headers], body)
            before, _, after = rendered.head.partition(_NONCE_MARK.encode("ascii"))
            plan = _Plan(route.op, profile_id, profile, status, (before, after), body)
        if len(self._plans) >= _MAX_CACHED:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def accept_post(self, request: QuickRequest) -> QuickPost | None:
        """A POST whose answer can come from here, else None (the dispatcher's: anything
        it would refuse before the handler runs goes there). ``INLINE_POSTS`` are answered
        on the event loop where the state allows it; the rest on the handler threads."""
        started = perf_counter()
        state = self.state
        if request.method != "POST":
            return None
        prefix, profile_id, route, params = resolve(request.path, state.settings.default_profile_id)
        if route is None or "POST" not in route.methods or not profile_id:
            return None
        if request.content_length > state.settings.max_body_bytes:
            return None
        content_type = request.content_type
        if content_type is None or not is_jose(content_type.decode("latin-1")):
            return None
        if not request.query.isascii():
            return None
        profile = state.ra.cached_acme_profile(profile_id)
        executor = self.executor
        # CAA at finalize asks DNS, and an uncached profile is read: threads' work.
        if (
            state.inline_posts
            and route.op in INLINE_POSTS
            and profile is not None
            and not (route.op == "finalize_order" and profile.caa_check)
        ):
            executor = None
        elif executor is None:
            return None
        base = self._base(request)
        # As Starlette's URL of the scope spells it (what the dispatcher compares).
        path = request.path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        url = base + path
        if request.query:
            url += "?" + request.query.decode("ascii")
        return QuickPost(
            state,
            route,
            Request(
                method="POST",
                path=request.path,
                url=url,
                urls=AcmeUrls(base, prefix),
                profile_id=profile_id,
                params=params,
                query=request.query,
                client_address=request.client[0] if request.client else None,
                body=b"",
            ),
            profile,
            started,
            executor,
        )

    def _base(self, request: QuickRequest) -> str:
        """scheme://netloc as the dispatcher finds it (Starlette's URL of the scope)."""
        key = (request.scheme, request.host, request.server)
        base = self._bases.get(key)
        if base is None:
            headers = [(b"host", request.host)] if request.host is not None else []
            url = URL(
                scope={
                    "type": "http",
                    "scheme": request.scheme,
                    "server": request.server,
                    "path": "/",
                    "headers": headers,
                }
            )
            base = f"{url.scheme}://{url.netloc}"
            if len(self._bases) >= _MAX_CACHED:
                self._bases.clear()
            self._bases[key] = base
        return base

    def _directory(self, base: str, prefix: str, profile: Profile) -> bytes:
        # The profile object is replaced whenever the RA's cache reloads it (about once a
        # second), so a changed profile shows here as soon as it does on the slow path.
        key = (base, prefix)
        hit = self._directories.get(key)
        if hit is not None and hit[0] is profile:
            return hit[1]
        doc = h.directory_doc(self.state.settings, profile, AcmeUrls(base, prefix))
        body = json.dumps(doc, separators=(",", ":")).encode()
        if len(self._directories) >= _MAX_CACHED:
            self._directories.clear()
        self._directories[key] = (profile, body)
        return body


class QuickPost:
    """A POST taken at head time (``certctl.fastpath.QuickPost``)."""

    __slots__ = ("_held", "_profile", "_request", "_route", "_started", "_state", "executor")
    body_timeout = BODY_TIMEOUT_S

    def __init__(
        self,
        state: WfeState,
        route: Route,
        request: Request,
        profile: Profile | None,
        started: float,
        executor: Executor | None,
    ) -> None:
        self.executor = executor
        self._state = state
        self._route = route
        self._request = request
        self._profile = profile
        self._started = started
        self._held: Hold | None = None

    def answer(self, body: bytes) -> QuickAnswer:
        request = dataclasses.replace(self._request, body=body)
        state, route, profile, started = self._state, self._route, self._profile, self._started
        if self.executor is None:
            # Commits and reads do not wait for the disk on the event loop: the answer
            # waits (held), not the loop. On a handler thread respond_sync waits itself.
            with state.ra.hold_commits() as self._held:
                response = respond_sync(state, route, request, profile, started, on_loop=True)
        else:
            response = respond_sync(state, route, request, profile, started, on_loop=False)
        return render_raw(response.status_code, response.raw_headers, bytes(response.body))

    def held(self) -> asyncio.Future[None] | None:
        """What the answer must wait for before it is written: the disk, for commits it
        made or read that are not on it yet (certctl.storage.durable)."""
        return None if self._held is None else self._held.pending()

    def too_slow(self) -> QuickAnswer:
        err = AcmeError(ProblemType.MALFORMED, "request body too slow", status=408)
        response = problem_for(self._state, self._route, err, self._request, self._started)
        return render_raw(response.status_code, response.raw_headers, bytes(response.body))
