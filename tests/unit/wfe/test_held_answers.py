"""A POST answered through ``routes.respond_sync`` waits for the disk where it runs: on
a handler thread before its answer, which is a 500 ``serverInternal`` problem if the sync
fails (as the dispatcher answers any internal error); on the event loop not at all (the
caller holds the answer instead)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter

from starlette.responses import Response

from certctl.config import load_settings
from certctl.domain.model import AuthMode, Profile
from certctl.observability.metrics import Metrics
from certctl.storage.durable import DurabilityError
from certctl.wfe import handlers as h
from certctl.wfe.routes import Request, Route, WfeState, respond_sync
from certctl.wfe.urls import AcmeUrls

PROFILE = Profile(
    id="default", name="default", issuer_id="iss", acme_auth_mode=AuthMode.TRUST_AUTHENTICATED
)


@dataclass
class _Hold:
    fail: bool
    waited: list[bool] = field(default_factory=list)

    def wait(self) -> None:
        self.waited.append(True)
        if self.fail:
            raise DurabilityError("cannot sync the SQLite WAL: [Errno 5] Input/output error")


@dataclass
class _Ra:
    hold: _Hold

    @contextmanager
    def hold_commits(self) -> Iterator[_Hold]:
        yield self.hold

    def new_nonce(self) -> str:
        return "nonce"


def _ok(_call: h.Call) -> Response:
    return Response(b"{}", status_code=201, media_type="application/json")


def _answer(hold: _Hold, *, on_loop: bool) -> Response:
    state = WfeState(_Ra(hold), load_settings({}).acme, Metrics())  # type: ignore[arg-type]
    route = Route("new_order", {"POST": _ok}, None)
    urls = AcmeUrls("https://ca.example", "/acme")
    request = Request(
        "POST",
        "/acme/new-order",
        "https://ca.example/acme/new-order",
        urls,
        "default",
        {},
        b"",
        None,
        b"",
    )
    return respond_sync(state, route, request, PROFILE, perf_counter(), on_loop=on_loop)


def test_on_a_handler_thread_the_answer_waits_for_the_disk() -> None:
    hold = _Hold(fail=False)
    assert _answer(hold, on_loop=False).status_code == 201
    assert hold.waited == [True]


def test_a_failed_sync_on_a_handler_thread_is_a_500_problem_not_a_dropped_connection() -> None:
    response = _answer(_Hold(fail=True), on_loop=False)
    assert response.status_code == 500
    assert json.loads(bytes(response.body))["type"] == "urn:ietf:params:acme:error:serverInternal"


def test_on_the_event_loop_respond_sync_does_not_wait() -> None:
    hold = _Hold(fail=True)  # a wait here would fail the answer
    assert _answer(hold, on_loop=True).status_code == 201
    assert hold.waited == []
