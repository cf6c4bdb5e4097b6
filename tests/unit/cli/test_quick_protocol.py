"""The protocol's quick path (point 7 of certctl.cli._protocol): which requests it takes,
what it writes, and that answers keep their order on a pipelined connection."""

from __future__ import annotations

import asyncio
import re

import pytest
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.server import ServerState

from certctl.cli._protocol import DrainingHttpToolsProtocol
from certctl.fastpath import QuickAnswer, QuickRequest, render, render_raw
from tests.unit.cli.test_protocol import _Transport

HOST = b"Host: 127.0.0.1\r\n"
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class _App:
    """An ASGI app (answers ``slow <path>``) with an ``answer_now`` for paths under /q."""

    def __init__(self, *, fail: bool = False) -> None:
        self.seen: list[str] = []
        self.fail = fail

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
