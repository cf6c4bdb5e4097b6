"""The HTTP protocol's size bounds hold however the transport splits the bytes.

tests/integration/test_smuggling.py sends the same shapes over real TLS, where how much
one read returns depends on timing; here each shape is fed in reads of fixed sizes, one
read for the whole attack included, so that a bound that only holds for small reads fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.server import ServerState

from certctl.cli._protocol import (
    CHUNK_FRAMING_MAX_BYTES,
    HEAD_MAX_BYTES,
    DrainingHttpToolsProtocol,
)

HOST = b"Host: 127.0.0.1\r\n"
HIDDEN = b"GET /hidden HTTP/1.1\r\n" + HOST + b"\r\n"
READ_SIZES = [1 << 30, 256 * 1024, 65536, 4096]  # 1 << 30: the whole attack in one read


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(data: bytes, read_size: int) -> tuple[list[str], bytes, bool]:
    """Feed ``data`` in reads of ``read_size``; the paths the app saw, the bytes sent back."""
    seen: list[str] = []

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        assert scope["type"] == "http"
        seen.append(scope["path"])
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app=app, ws="none", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = DrainingHttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    transport = _Transport()
    protocol.connection_made(transport)
    for start in range(0, len(data), read_size):
        if transport.closed:
            break
        protocol.data_received(data[start : start + read_size])
        await asyncio.sleep(0)
    for _ in range(20):  # let the application tasks run to their end
        await asyncio.sleep(0)
    closed = transport.closed
    protocol.connection_lost(None)
    return seen, bytes(transport.written), closed


def _post(headers: bytes, body: bytes) -> bytes:
    return b"POST /body HTTP/1.1\r\n" + HOST + headers + b"\r\n" + body


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_unbounded_chunk_extension_is_refused_whatever_the_read_size(read_size: int) -> None:
    attack = _post(
        b"Transfer-Encoding: chunked\r\n",
        b"5;a=" + b"b" * (CHUNK_FRAMING_MAX_BYTES * 3) + b"\r\nhello\r\n0\r\n\r\n" + HIDDEN,
    )
    seen, written, closed = asyncio.run(_serve(attack, read_size))
    assert "/hidden" not in seen
    assert written.startswith(b"HTTP/1.1 400 ")
    assert b"chunk framing over" in written
    assert closed


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_head_over_the_cap_is_refused_whatever_the_read_size(read_size: int) -> None:
    attack = b"GET /head HTTP/1.1\r\n" + HOST + b"X-Pad: " + b"a" * (HEAD_MAX_BYTES * 2)
    attack += b"\r\n\r\n" + HIDDEN
    seen, written, closed = asyncio.run(_serve(attack, read_size))
    assert seen == []
    assert written.startswith(b"HTTP/1.1 431 ")
    assert closed


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_large_well_framed_bodies_are_not_counted_as_framing(read_size: int) -> None:
    # Chunk data is body, not framing: 200 KiB in 4 KiB chunks has about 1 KiB of size
    # lines, and a Content-Length body of the same size has none.
    chunks = b"".join(b"1000\r\n" + b"x" * 4096 + b"\r\n" for _ in range(50))
    chunked = _post(b"Transfer-Encoding: chunked\r\n", chunks + b"0\r\n\r\n")
    sized = _post(b"Content-Length: %d\r\n" % (50 * 4096), b"y" * (50 * 4096))
    pipelined = chunked + sized + b"GET /last HTTP/1.1\r\n" + HOST + b"\r\n"
    seen, written, closed = asyncio.run(_serve(pipelined, read_size))
    assert seen == ["/body", "/body", "/last"]
    assert written.count(b"HTTP/1.1 200 ") == 3
    assert not closed


class _Writes(_Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        super().write(data)


async def _writes(data: bytes, chunks: list[bytes], *, fail: bool = False) -> _Writes:
    """Serve pipelined ``data`` with an app that answers ``chunks`` as its body; the
    transport's write calls, one by one."""

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        assert scope["type"] == "http"
        await receive()
        length = str(sum(len(c) for c in chunks)).encode()
        headers = [(b"content-length", length), (b"x-path", scope["path"].encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if fail:
            raise RuntimeError("the application fails after its head")
        for i, chunk in enumerate(chunks):
            more = i < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    config = Config(app=app, ws="none", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = DrainingHttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    transport = _Writes()
    protocol.connection_made(transport)
    protocol.data_received(data)
    for _ in range(40):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def test_a_response_goes_out_in_one_write_and_pipelined_answers_stay_in_order() -> None:
    requests = b"".join(b"GET /%d HTTP/1.1\r\n" % i + HOST + b"\r\n" for i in range(3))
    transport = asyncio.run(_writes(requests, [b"hello"]))
    assert len(transport.writes) == 3
    for i, write in enumerate(transport.writes):
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\nhello")
        assert b"x-path: /%d\r\n" % i in write


def test_head_answers_and_streamed_bodies_are_all_written() -> None:
    head = asyncio.run(_writes(b"HEAD / HTTP/1.1\r\n" + HOST + b"\r\n", [b"hello"]))
    assert len(head.writes) == 1 and head.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.writes[0].endswith(b"\r\n\r\n") and b"content-length: 5\r\n" in head.writes[0]
    streamed = asyncio.run(_writes(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n", [b"ab", b"cd"]))
    assert len(streamed.writes) == 2
    assert streamed.writes[0].endswith(b"\r\n\r\nab") and streamed.writes[1] == b"cd"


def test_a_head_is_not_lost_when_the_application_fails_after_it() -> None:
    transport = asyncio.run(_writes(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n", [b"x"], fail=True))
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.closed
