"""The protocol's quick path (point 7 of certctl.cli._protocol): which requests it takes,
what it writes, and that answers keep their order on a pipelined connection; POSTs the
app takes have their bodies gathered, within the app's time limit."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import pytest
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.server import ServerState

from certctl.cli import _protocol
from certctl.cli._protocol import DrainingHttpToolsProtocol
from certctl.fastpath import QuickAnswer, QuickRequest, render, render_raw
from tests.unit.cli.test_protocol import _Transport

HOST = b"Host: 127.0.0.1\r\n"
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class _Post:
    """A POST taken by ``_App.accept_post``: answers ``posted <path> <body>``."""

    def __init__(self, app: _App, request: QuickRequest) -> None:
        self.app = app
        self.request = request
        self.body_timeout = app.body_timeout
        self.executor = app.executor

    def answer(self, body: bytes) -> QuickAnswer:
        time.sleep(self.app.delay)
        if self.app.fail:
            raise RuntimeError("boom")
        self.app.seen.append(f"posted {self.request.path} {body!r}")
        out = f"posted {self.request.path} ".encode() + body
        return render(201, [("content-type", "text/plain")], out)

    def too_slow(self) -> QuickAnswer:
        self.app.seen.append(f"too slow {self.request.path}")
        return render(408, [("content-type", "text/plain")], b"too slow")

    def held(self) -> asyncio.Future[None] | None:
        return self.app.hold


class _App:
    """An ASGI app (answers ``slow <path>``) with an ``answer_now`` for paths under /q and
    an ``accept_post`` for POSTs under /p."""

    def __init__(
        self,
        *,
        fail: bool = False,
        body_timeout: float = 5.0,
        executor: Executor | None = None,
    ) -> None:
        self.seen: list[str] = []
        self.fail = fail
        self.body_timeout = body_timeout
        self.executor = executor  # None: answered on the event loop
        self.delay = 0.0
        self.offered: list[QuickRequest] = []
        self.hold: asyncio.Future[None] | None = None  # what a loop answer waits for

    def accept_post(self, request: QuickRequest) -> _Post | None:
        self.offered.append(request)
        return _Post(self, request) if request.path.startswith("/p") else None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        assert scope["type"] == "http"
        self.seen.append("slow " + scope["path"])
        await receive()
        body = f"slow {scope['path']}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        if not request.path.startswith("/q"):
            return None
        if self.fail:
            raise RuntimeError("boom")
        self.seen.append(f"quick {request.method} {request.path} {request.query!r}")
        body = f"quick {request.path}".encode()
        return render(200, [("content-type", "text/plain")], body)


class _Wrapper:
    """As uvicorn's and certctl's middleware wrap the app: ``.app`` leads to it."""

    def __init__(self, app: _App) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        await self.app(scope, receive, send)


async def _serve(app: _App, data: bytes, *, paused: bool = False) -> tuple[bytes, bool]:
    config = Config(app=_Wrapper(app), ws="none", lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Fri, 04 Dec 2026 00:00:00 GMT")]
    protocol = DrainingHttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    if paused:
        protocol.flow.write_paused = True
    protocol.data_received(data)
    for _ in range(20):
        await asyncio.sleep(0)
    closed = transport.closed
    protocol.connection_lost(None)
    return bytes(transport.written), closed


def _get(path: str, extra: bytes = b"", method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    return method + b" " + path.encode() + b" HTTP/" + version + b"\r\n" + HOST + extra + b"\r\n"


def test_a_get_the_app_can_answer_is_answered_without_an_asgi_cycle() -> None:
    app = _App()
    written, closed = asyncio.run(_serve(app, _get("/q/x?a=1")))
    assert app.seen == ["quick GET /q/x b'a=1'"]
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 10\r\n" in head
    assert b"\r\ndate: Fri, 04 Dec 2026 00:00:00 GMT" in head  # the server's default fields
    assert b"connection: close" not in head
    assert body == b"quick /q/x"
    assert not closed  # keep-alive


def test_head_gets_the_length_but_no_body() -> None:
    app = _App()
    written, _ = asyncio.run(_serve(app, _get("/q", method=b"HEAD")))
    assert app.seen == ["quick HEAD /q b''"]
    assert written.endswith(b"content-length: 8\r\ndate: Fri, 04 Dec 2026 00:00:00 GMT\r\n\r\n")


def test_http_1_0_is_answered_and_closed() -> None:
    written, closed = asyncio.run(_serve(_App(), _get("/q", version=b"1.0")))
    assert b"\r\nconnection: close\r\n" in written
    assert written.endswith(b"quick /q")
    assert closed


def test_a_percent_encoded_path_is_decoded_as_asgi_does() -> None:
    app = _App()
    asyncio.run(_serve(app, _get("/q%2Fa%20b")))
    assert app.seen == ["quick GET /q/a b b''"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        _get("/q", method=b"POST", extra=b"Content-Length: 0\r\n"),
        _get("/q", method=b"DELETE"),
        _get("/q", extra=b"Content-Length: 0\r\n"),  # a GET with framing: the ordinary way
        _get("/q", extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        _get("/q", extra=b"Expect: 100-continue\r\n"),
        _get("/q", extra=b"X-Forwarded-For: 192.0.2.1\r\n"),
        _get("/q", extra=b"X-Forwarded-Proto: https\r\n"),
        _get("/elsewhere"),  # answer_now says None
    ],
    ids=["post", "delete", "content-length", "chunked", "expect", "xff", "xfp", "unknown"],
)
def test_everything_else_goes_the_ordinary_way(request_bytes: bytes) -> None:
    app = _App()
    written, _ = asyncio.run(_serve(app, request_bytes))
    assert len(app.seen) == 1 and app.seen[0].startswith("slow "), app.seen
    assert b"HTTP/1.1 200 OK\r\n" in written  # after a 100 Continue for the expectation
    assert b"slow /" in written


def test_an_answer_that_fails_falls_back_to_the_ordinary_way() -> None:
    app = _App(fail=True)
    written, _ = asyncio.run(_serve(app, _get("/q")))
    assert app.seen == ["slow /q"]
    assert written.endswith(b"slow /q")


def test_a_connection_whose_writes_are_backed_up_is_not_answered_quickly() -> None:
    # Writing more while the client does not read would grow our buffer without bound.
    app = _App()
    asyncio.run(_serve(app, _get("/q"), paused=True))
    assert app.seen == ["slow /q"]


def test_pipelined_answers_keep_their_order() -> None:
    app = _App()
    data = _get("/q/1") + _get("/slow") + _get("/q/2") + _get("/q/3")
    written, closed = asyncio.run(_serve(app, data))
    bodies = [b.decode() for b in re.findall(rb"(?:quick|slow) /[a-z0-9/]+", written)]
    # The first is answered at once; the rest queue behind the ordinary one, in order.
    assert bodies == ["quick /q/1", "slow /slow", "slow /q/2", "slow /q/3"]
    assert [m.group(1) for m in STATUS.finditer(written)] == [b"200"] * 4
    assert not closed


def test_consecutive_quick_answers_on_one_connection() -> None:
    app = _App()
    written, _ = asyncio.run(
        _serve(app, _get("/q/1") + _get("/q/2", method=b"HEAD") + _get("/q/3"))
    )
    assert app.seen == ["quick GET /q/1 b''", "quick HEAD /q/2 b''", "quick GET /q/3 b''"]
    assert written.count(b"HTTP/1.1 200 OK") == 3
    assert written.endswith(b"quick /q/3")


def test_render_sets_content_length_only_where_allowed() -> None:
    assert b"content-length: 2\r\n" in render(200, [], b"ok").head
    assert b"content-length" not in render(204, [("x", "y")], b"").head
    assert b"content-length" not in render(304, [], b"").head
    assert (
        render(201, [("a", "b")], b"").head
        == b"HTTP/1.1 201 Created\r\na: b\r\ncontent-length: 0\r\n"
    )


def test_render_raw_keeps_the_fields_as_given() -> None:
    answer = render_raw(200, [(b"content-length", b"3"), (b"x-a", b"1")], b"abc")
    assert answer == QuickAnswer(200, b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-a: 1\r\n", b"abc")


def test_a_quick_answer_leaves_no_idle_timer_under_a_slower_pipelined_request() -> None:
    # The quick answer arms the keep-alive timer while the next request of the same read
    # is still to be parsed; that request must stop it, or it would close the connection
    # under a request that takes longer than the keep-alive timeout.
    class _Slow(_App):
        async def __call__(
            self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            await asyncio.sleep(0.3)
            await super().__call__(scope, receive, send)

    async def run() -> tuple[bytes, bool]:
        app = _Slow()
        config = Config(
            app=_Wrapper(app), ws="none", lifespan="off", log_config=None, timeout_keep_alive=0
        )
        config.load()
        config.timeout_keep_alive = 0.05  # type: ignore[assignment]  # below the app's 0.3 s
        protocol = DrainingHttpToolsProtocol(
            config, ServerState(), {}, _loop=asyncio.get_running_loop()
        )
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(_get("/q/1") + _get("/slow"))
        await asyncio.sleep(0.2)  # past the keep-alive timeout, before the slow answer
        closed_while_busy = transport.closed
        await asyncio.sleep(0.4)
        protocol.connection_lost(None)
        return bytes(transport.written), closed_while_busy

    written, closed_while_busy = asyncio.run(run())
    assert not closed_while_busy
    assert b"quick /q/1" in written
    assert written.endswith(b"slow /slow"), written


def _post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    head = b"POST " + path.encode() + b" HTTP/1.1\r\n" + HOST
    return head + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


async def _feed(
    app: _App, reads: list[bytes], *, pause: float = 0.0, shutdown_after: int | None = None
) -> tuple[bytes, bool, DrainingHttpToolsProtocol]:
    """Feed ``reads`` one ``data_received`` each, ``pause`` seconds apart."""
    config = Config(app=_Wrapper(app), ws="none", lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    protocol = DrainingHttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    for i, data in enumerate(reads):
        if i:
            await asyncio.sleep(pause)
        if shutdown_after == i:
            protocol.shutdown()
        protocol.data_received(data)
    for _ in range(20):
        await asyncio.sleep(0)
    return bytes(transport.written), transport.closed, protocol


def test_a_post_the_app_takes_gets_its_whole_body_however_it_arrives() -> None:
    app = _App()
    data = _post("/p/x?y=1", b"0123456789", b"Content-Type: application/jose+json\r\n")
    reads = [data[:-7], data[-7:-3], data[-3:]]
    written, closed, _ = asyncio.run(_feed(app, reads, pause=0.01))
    assert app.seen == ["posted /p/x b'0123456789'"]
    offered = app.offered[0]
    assert (offered.method, offered.query) == ("POST", b"y=1")
    assert (offered.content_type, offered.content_length) == (b"application/jose+json", 10)
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Created\r\n")
    assert body == b"posted /p/x 0123456789"
    assert not closed


def test_posts_and_gets_pipelined_in_one_read_are_answered_in_order() -> None:
    app = _App()
    data = _post("/p/1", b"a") + _get("/q/2") + _post("/p/3", b"bc") + _get("/slow")
    written, _, _ = asyncio.run(_feed(app, [data]))
    bodies = re.findall(rb"(?:posted|quick|slow) /[a-z0-9/]+(?: [a-c]+)?", written)
    assert bodies == [b"posted /p/1 a", b"quick /q/2", b"posted /p/3 bc", b"slow /slow"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        _get("/p", method=b"POST", extra=b"Transfer-Encoding: chunked\r\n")
        + b"1\r\na\r\n0\r\n\r\n",
        _post("/p", b"a", b"Expect: 100-continue\r\n"),
        _post("/p", b"a", b"X-Forwarded-For: 192.0.2.1\r\n"),
        _post("/p", b"a", b"Content-Type: a\r\nContent-Type: b\r\n"),
        _post("/elsewhere", b"a"),  # accept_post says None
        _get("/p", method=b"POST"),  # no length: a POST without a body
    ],
    ids=["chunked", "expect", "xff", "two-content-types", "declined", "no-length"],
)
def test_other_posts_go_the_ordinary_way(request_bytes: bytes) -> None:
    app = _App()
    written, _, _ = asyncio.run(_feed(app, [request_bytes]))
    assert len(app.seen) == 1 and app.seen[0].startswith("slow "), app.seen
    assert b"slow /" in written


def test_a_post_behind_an_ordinary_request_waits_its_turn_the_ordinary_way() -> None:
    app = _App()
    written, _, _ = asyncio.run(_feed(app, [_get("/slow") + _post("/p", b"a")]))
    assert app.seen == ["slow /slow", "slow /p"]
    assert written.endswith(b"slow /p")


def test_a_body_that_does_not_arrive_in_time_gets_the_apps_answer_and_a_close() -> None:
    app = _App(body_timeout=0.05)
    data = _post("/p", b"0123456789")
    written, closed, _ = asyncio.run(_feed(app, [data[:-5], data[-5:]], pause=0.2))
    assert app.seen == ["too slow /p"]  # the rest, arriving late, is not parsed
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"\r\nconnection: close" in head
    assert body == b"too slow"
    assert closed


def test_a_shutdown_while_a_body_arrives_answers_it_then_closes() -> None:
    app = _App()
    data = _post("/p", b"0123456789")
    written, closed, _ = asyncio.run(_feed(app, [data[:-5], data[-5:]], shutdown_after=1))
    assert app.seen == ["posted /p b'0123456789'"]
    assert b"\r\nconnection: close" in written
    assert written.endswith(b"posted /p 0123456789")
    assert closed


def test_a_connection_lost_mid_body_leaves_no_timer() -> None:
    async def run() -> list[str]:
        app = _App(body_timeout=0.05)
        data = _post("/p", b"0123456789")
        _, _, protocol = await _feed(app, [data[:-5]])
        protocol.connection_lost(None)
        await asyncio.sleep(0.1)
        return app.seen

    assert asyncio.run(run()) == []


def test_an_answer_that_fails_aborts_the_connection() -> None:
    app = _App(fail=True)
    written, closed, _ = asyncio.run(_feed(app, [_post("/p", b"a")]))
    assert written == b""
    assert closed


async def _connection(
    app: _App, keep_alive_s: float
) -> tuple[DrainingHttpToolsProtocol, _Transport]:
    config = Config(app=_Wrapper(app), ws="none", lifespan="off", log_config=None)
    config.load()
    config.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]  # below 1 s
    protocol = DrainingHttpToolsProtocol(
        config, ServerState(), {}, _loop=asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_an_idle_connection_after_a_quick_answer_closes_at_the_keep_alive_deadline() -> None:
    async def run() -> tuple[bool, bool]:
        protocol, transport = await _connection(_App(), 0.2)
        protocol.data_received(_get("/q"))
        await asyncio.sleep(0.1)
        open_before = not transport.closed
        await asyncio.sleep(0.25)
        return open_before, transport.closed

    assert asyncio.run(run()) == (True, True)


def test_a_head_that_stops_halfway_is_cut_off_at_its_own_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_protocol, "HEAD_TIMEOUT_S", 0.1)

    async def run() -> tuple[bool, bool]:
        protocol, transport = await _connection(_App(), 5.0)
        protocol.data_received(_get("/q"))  # answered; idle until the keep-alive deadline
        protocol.data_received(b"GET /q HTTP/1.1\r\nHost: x")  # never finished
        await asyncio.sleep(0.05)
        open_before = not transport.closed
        await asyncio.sleep(0.15)
        return open_before, transport.closed

    assert asyncio.run(run()) == (True, True)


class _CountingLoop:
    """The event loop, counting the timers armed through it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.armed = 0

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        self.armed += 1
        return self._loop.call_at(when, callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        self.armed += 1
        return self._loop.call_later(delay, callback)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loop, name)


def test_requests_move_deadlines_without_arming_a_timer_each() -> None:
    async def run() -> int:
        protocol, transport = await _connection(_App(), 30.0)  # as served: above the head's
        loop = _CountingLoop(protocol.loop)
        protocol.loop = loop  # type: ignore[assignment]
        for _ in range(50):
            protocol.data_received(_get("/q"))
            await asyncio.sleep(0)
        assert not transport.closed
        protocol.connection_lost(None)
        assert protocol._watch is None
        return loop.armed

    # The connection's first timer (its head deadline, armed when it opened) fires before
    # every later deadline, and arms itself again for them when it does.
    assert asyncio.run(run()) == 0


def test_a_long_lived_connection_keeps_its_timer_after_it_first_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once the first timer has fired, the one it arms must again come no later than the
    # next request's head deadline; armed for the idle deadline instead, every request
    # would cancel it and arm another.
    monkeypatch.setattr(_protocol, "HEAD_TIMEOUT_S", 0.05)

    async def run() -> tuple[int, int, int]:
        protocol, transport = await _connection(_App(), 30.0)
        loop = _CountingLoop(protocol.loop)
        protocol.loop = loop  # type: ignore[assignment]
        fired = 0
        on_watch = protocol._on_watch

        def counted() -> None:
            nonlocal fired
            fired += 1
            on_watch()

        protocol._on_watch = counted  # type: ignore[method-assign]
        requests = 0
        clock = asyncio.get_running_loop().time
        started = clock()
        while clock() - started < 0.4:
            protocol.data_received(_get("/q"))
            requests += 1
            await asyncio.sleep(0.005)
        assert not transport.closed
        protocol.connection_lost(None)
        return loop.armed, fired, requests

    armed, fired, requests = asyncio.run(run())
    assert fired >= 3, "the timer should have fired along the way"
    assert requests > 3 * fired
    # One timer armed per firing, the first firing included (that timer was armed when
    # the connection opened, before its callback was wrapped to count).
    assert armed <= fired + 1, (armed, fired, requests)


def _threaded(delay: float = 0.2) -> tuple[_App, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(2)
    app = _App(executor=executor)
    app.delay = delay
    return app, executor


def test_a_post_answered_on_a_thread_keeps_later_requests_behind_it() -> None:
    app, executor = _threaded()
    data = _post("/p/1", b"a") + _get("/q/2") + _post("/p/3", b"bc")

    async def run() -> tuple[bytes, bool]:
        _, _, protocol = await _feed(app, [data])
        await asyncio.sleep(0.6)
        transport = protocol.transport
        return bytes(transport.written), transport.closed  # type: ignore[attr-defined]

    try:
        written, closed = asyncio.run(run())
    finally:
        executor.shutdown()
    bodies = re.findall(rb"(?:posted|quick|slow) /[a-z0-9/]+(?: [a-c]+)?", written)
    # The later ones waited in uvicorn's pipeline and went the ordinary way, in order.
    assert bodies == [b"posted /p/1 a", b"slow /q/2", b"slow /p/3"], written
    assert not closed


def test_a_shutdown_while_a_thread_answers_closes_after_the_answer() -> None:
    app, executor = _threaded()

    async def run() -> tuple[bytes, bool]:
        _, _, protocol = await _feed(app, [_post("/p", b"x")])
        protocol.shutdown()  # the answer is still being computed
        await asyncio.sleep(0.4)
        transport = protocol.transport
        return bytes(transport.written), transport.closed  # type: ignore[attr-defined]

    try:
        written, closed = asyncio.run(run())
    finally:
        executor.shutdown()
    assert b"\r\nconnection: close\r\n" in written  # shutdown turned keep-alive off
    assert written.endswith(b"posted /p x")
    assert closed


def test_a_client_gone_while_a_thread_answers_is_not_written_to() -> None:
    app, executor = _threaded()

    async def run() -> bytes:
        _, _, protocol = await _feed(app, [_post("/p", b"x")])
        protocol.connection_lost(None)
        await asyncio.sleep(0.4)
        return bytes(protocol.transport.written)  # type: ignore[attr-defined]

    try:
        assert asyncio.run(run()) == b""
    finally:
        executor.shutdown()


def test_a_post_arriving_after_the_threads_stopped_ends_the_connection() -> None:
    app, executor = _threaded(delay=0.0)
    executor.shutdown()  # as at the end of a shutdown: nothing can answer it

    async def run() -> tuple[bytes, bool, bool]:
        _, _, protocol = await _feed(app, [_post("/p", b"x")])
        await asyncio.sleep(0.05)
        transport = protocol.transport
        cycle = protocol.cycle
        done = cycle is not None and cycle.response_complete
        return bytes(transport.written), transport.closed, done  # type: ignore[attr-defined]

    written, closed, done = asyncio.run(run())
    assert written == b""
    assert closed
    assert done  # shutdown does not wait for an answer that cannot come


def test_an_answer_held_for_the_disk_is_written_after_it_and_keeps_its_place() -> None:
    app = _App()
    data = _post("/p/1", b"a") + _get("/q/2")

    async def run() -> tuple[bytes, bytes, bool]:
        app.hold = asyncio.get_running_loop().create_future()
        _, _, protocol = await _feed(app, [data])
        await asyncio.sleep(0.05)
        transport = protocol.transport
        before = bytes(transport.written)  # type: ignore[attr-defined]
        app.hold.set_result(None)
        await asyncio.sleep(0.05)
        return before, bytes(transport.written), transport.closed  # type: ignore[attr-defined]

    before, after, closed = asyncio.run(run())
    assert before == b""  # neither the answer nor the request behind it went first
    bodies = re.findall(rb"(?:posted|quick|slow) /[a-z0-9/]+(?: a)?", after)
    assert bodies == [b"posted /p/1 a", b"slow /q/2"], after
    assert not closed


def test_an_answer_whose_hold_fails_is_not_written_and_the_connection_ends() -> None:
    app = _App()

    async def run() -> tuple[bytes, bool]:
        app.hold = asyncio.get_running_loop().create_future()
        _, _, protocol = await _feed(app, [_post("/p", b"x")])
        app.hold.set_exception(RuntimeError("the disk failed"))
        await asyncio.sleep(0.05)
        transport = protocol.transport
        return bytes(transport.written), transport.closed  # type: ignore[attr-defined]

    written, closed = asyncio.run(run())
    assert written == b""
    assert closed
