"""Request smuggling at the socket level (RFC 9112 §6.1, §6.3, §11.2).

Each shape is sent as raw bytes over TLS to a served certctl, with a second request hidden
where a parser that disagreed about the framing would find it. The server must refuse the
shape (one 4xx answer) and must never process the hidden request: its path is unique, and
every request certctl processes leaves an access-log line naming its path, so the log
shows whether it ran. A pipelined request on a well-framed connection is processed and
logged the same way, which shows that the check can see one.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from certctl.cli._protocol import CHUNK_FRAMING_MAX_BYTES, HEAD_MAX_BYTES
from tests.support.server import ServedCertctl

HOST = b"Host: 127.0.0.1\r\n"
JOSE = b"Content-Type: application/jose+json\r\n"
# Long enough for any answer to arrive, shorter than the server's keep-alive timeout: a
# connection that ends before it was closed because of the request, not for idling.
READ_WINDOW_S = 3.0
LOG_WAIT_S = 10.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*")


@pytest.fixture(scope="module")
def database_url() -> None:
    """Framing does not depend on the store: SQLite only."""
    return None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    answers: list[Answer]
    closed: bool  # the server ended the connection within READ_WINDOW_S


def _tls(served: ServedCertctl) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(served.root_pem_path))
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=READ_WINDOW_S)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _exchange(served: ServedCertctl, data: bytes) -> Exchange:
    """Send ``data`` at once, read for READ_WINDOW_S or until the server closes."""
    conn = _tls(served)
    received = b""
    closed = False
    with conn:
        # Refused while still sending: what was answered is still readable.
        with contextlib.suppress(OSError):
            conn.sendall(data)
        deadline = time.monotonic() + READ_WINDOW_S
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            except (ConnectionError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    return Exchange(_parse_answers(received), closed)


def _parse_answers(data: bytes) -> list[Answer]:
    """The responses in ``data``, one after the other (Content-Length or chunked)."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {data[:200]!r}"
        status_line, *lines = head.split(b"\r\n")
        match = STATUS_LINE.fullmatch(status_line)
        assert match, f"not a status line: {status_line[:200]!r}"
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            body, rest = rest[:length], rest[length:]
        answers.append(Answer(int(match.group(1)), headers, body))
        data = rest
    return answers


def _wait_for_log(served: ServedCertctl, needle: str) -> None:
    deadline = time.monotonic() + LOG_WAIT_S
    while needle not in served.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{needle} never reached the server log"
        time.sleep(0.05)


def _processed(served: ServedCertctl, token: str) -> bool:
    """Whether a request for a path containing ``token`` was processed.

    A control request on a fresh connection is logged first: the hidden request, had it
    run, ran before the attack's connection ended, so its line would already be there.
    """
    control = f"control-{secrets.token_hex(6)}"
    request = b"GET /acme/%s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (control.encode(), HOST)
    assert [a.status for a in _exchange(served, request).answers] == [404]
    _wait_for_log(served, control)
    return token in served.log_path.read_text(errors="replace")


def _hidden(token: str) -> bytes:
    return b"GET /acme/" + token.encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n"


def _post(headers: bytes, body: bytes) -> bytes:
    return b"POST /acme/new-account HTTP/1.1\r\n" + HOST + JOSE + headers + b"\r\n" + body


@dataclass(frozen=True)
class Shape:
    build: Callable[[bytes], bytes]  # from the hidden request to the bytes sent
    status: int
    closes: bool = True


TERMINATOR = b"0\r\n\r\n"
SHAPES = {
    # RFC 9112 §6.3 item 3: both headers is smuggling; refused, whichever comes first.
    "content-length-and-chunked": Shape(
        lambda h: _post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", TERMINATOR + h),
        400,
    ),
    "chunked-and-content-length": Shape(
        lambda h: _post(
            b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % (len(h) + 5), TERMINATOR + h
        ),
        400,
    ),
    # RFC 9112 §6.3 item 5: differing (or any repeated) Content-Length.
    "two-content-lengths": Shape(
        lambda h: _post(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(h), h), 400
    ),
    "content-length-list": Shape(lambda h: _post(b"Content-Length: 0, %d\r\n" % len(h), h), 400),
    # Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, no hex, nothing after the digits.
    "content-length-plus": Shape(lambda h: _post(b"Content-Length: +0\r\n", h), 400),
    "content-length-minus": Shape(lambda h: _post(b"Content-Length: -1\r\n", h), 400),
    "content-length-hex": Shape(lambda h: _post(b"Content-Length: 0x0\r\n", h), 400),
    "content-length-trailing-space": Shape(lambda h: _post(b"Content-Length: 0 \r\n", h), 400),
    "content-length-trailing-tab": Shape(lambda h: _post(b"Content-Length: 0\t\r\n", h), 400),
    # RFC 9112 §6.1, §6.3 item 4: chunked, once, last, and nothing else.
    "chunked-then-identity": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked, identity\r\n", TERMINATOR + h), 400
    ),
    "identity-then-chunked": Shape(
        lambda h: _post(b"Transfer-Encoding: identity, chunked\r\n", TERMINATOR + h), 400
    ),
    "identity-and-chunked-lines": Shape(
        lambda h: _post(
            b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", TERMINATOR + h
        ),
        400,
    ),
    "chunked-twice": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", h), 400
    ),
    "xchunked": Shape(lambda h: _post(b"Transfer-Encoding: xchunked\r\n", TERMINATOR + h), 400),
    "gzip": Shape(lambda h: _post(b"Transfer-Encoding: gzip\r\n", TERMINATOR + h), 400),
    # obs-fold (RFC 9112 §5.2): a continuation line is refused, not joined.
    "obs-fold-value": Shape(
        lambda h: _post(b"Transfer-Encoding:\r\n chunked\r\n", TERMINATOR + h), 400
    ),
    "obs-fold-header": Shape(
        lambda h: _post(b"X-Pad: a\r\n Transfer-Encoding: chunked\r\n", TERMINATOR + h), 400
    ),
    "space-before-colon": Shape(
        lambda h: _post(b"Transfer-Encoding : chunked\r\n", TERMINATOR + h), 400
    ),
    # RFC 9112 §7.1: chunk-size is 1*HEXDIG; the size overflows 64 bits or is negative.
    "chunk-size-negative": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked\r\n", b"-1\r\n\r\n" + h), 400
    ),
    "chunk-size-overflow": Shape(
        lambda h: _post(
            b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"\r\nhello\r\n" + TERMINATOR + h
        ),
        400,
    ),
    "chunk-size-hex-prefix": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n" + TERMINATOR + h),
        400,
    ),
    "chunk-size-space": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked\r\n", b"5 ;a=b\r\nhello\r\n" + TERMINATOR + h),
        400,
    ),
    # 2**32: a 32-bit parser in front would read 0 and pass the hidden request on; certctl
    # reads a 4 GiB chunk, answers 413 at the body cap and closes (RFC 9112 §9.3).
    "chunk-size-2-to-the-32": Shape(
        lambda h: _post(
            b"Transfer-Encoding: chunked\r\n",
            b"100000000\r\nhello\r\n" + TERMINATOR + h + b"x" * (70 * 1024),
        ),
        413,
    ),
    # Chunk extensions (RFC 9112 §7.1.1): no bare LF, no CR/LF in a quoted value, and not
    # unbounded (llhttp skips them without counting).
    "chunk-extension-bare-lf": Shape(
        lambda h: _post(b"Transfer-Encoding: chunked\r\n", b"5;a\nb\r\nhello\r\n" + TERMINATOR + h),
        400,
    ),
    "chunk-extension-quoted-crlf": Shape(
        lambda h: _post(
            b"Transfer-Encoding: chunked\r\n", b'5;a="x\r\ny"\r\nhello\r\n' + TERMINATOR + h
        ),
        400,
    ),
    "chunk-extension-unbounded": Shape(
        lambda h: _post(
            b"Transfer-Encoding: chunked\r\n",
            b"5;a=" + b"b" * (CHUNK_FRAMING_MAX_BYTES * 3) + b"\r\nhello\r\n" + TERMINATOR + h,
        ),
        400,
    ),
    # RFC 9112 §2.2: a server may accept bare LF; certctl (llhttp, strict) does not.
    "bare-lf-head": Shape(
        lambda h: (
            b"POST /acme/new-account HTTP/1.1\n"
            + b"Host: 127.0.0.1\nContent-Length: %d\n\n" % len(h)
            + h
        ),
        400,
    ),
    "bare-lf-one-header": Shape(
        lambda h: _post(b"X-Pad: a\nContent-Length: %d\r\n" % len(h), h), 400
    ),
    "bare-cr": Shape(lambda h: _post(b"X-Pad: a\rContent-Length: 0\r\n", h), 400),
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, keep-alive or not.
    "http-1.0-chunked": Shape(
        lambda h: (
            b"POST /acme/new-account HTTP/1.0\r\n"
            + HOST
            + JOSE
            + b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
            + TERMINATOR
            + h
        ),
        400,
    ),
    "http-0.9-request-line": Shape(lambda h: b"GET /acme/directory\r\n" + HOST + b"\r\n" + h, 400),
    "http-2.0-request-line": Shape(
        lambda h: b"GET /acme/directory HTTP/2.0\r\n" + HOST + b"\r\n" + h, 400
    ),
    # RFC 9112 §3.2: exactly one Host (ACME URLs are built from it).
    "no-host": Shape(lambda h: b"GET /acme/directory HTTP/1.1\r\n\r\n" + h, 400),
    "two-hosts": Shape(
        lambda h: b"GET /acme/directory HTTP/1.1\r\n" + HOST + b"Host: evil.example\r\n\r\n" + h,
        400,
    ),
    "head-over-the-cap": Shape(
        lambda h: (
            b"GET /acme/directory HTTP/1.1\r\n"
            + HOST
            + b"X-Pad: "
            + b"a" * (HEAD_MAX_BYTES * 2)
            + b"\r\n\r\n"
            + h
        ),
        431,
    ),
    # A request inside a well-framed body is body: the JWS is malformed, nothing else runs.
    "request-inside-a-body": Shape(
        lambda h: _post(b"Content-Length: %d\r\n" % len(h), h), 400, closes=False
    ),
    # Answered before the body is read (415, 413 on the declared length): the connection
    # closes, so the unread body is never taken for the next request (RFC 9112 §9.3).
    "body-after-an-early-415": Shape(
        lambda h: (
            b"POST /acme/new-account HTTP/1.1\r\n"
            + HOST
            + b"Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
            + h
        ),
        415,
    ),
    "body-after-an-early-413": Shape(
        lambda h: _post(b"Content-Length: %d\r\n" % (1 << 30), h), 413
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_smuggling_shape_is_refused_and_the_hidden_request_never_runs(
    served: ServedCertctl, name: str
) -> None:
    shape = SHAPES[name]
    token = f"smuggled-{secrets.token_hex(6)}"
    exchange = _exchange(served, shape.build(_hidden(token)))
    assert [a.status for a in exchange.answers] == [shape.status], exchange.answers
    assert exchange.closed is shape.closes
    if shape.closes:  # and says so, so that no client reuses the connection
        assert exchange.answers[0].headers.get("connection") == "close"
    assert not _processed(served, token)


def test_well_framed_requests_are_still_served(served: ServedCertctl) -> None:
    # A pipelined request after a complete one runs: the check above can see one.
    token = f"pipelined-{secrets.token_hex(6)}"
    pipelined = b"GET /acme/directory HTTP/1.1\r\n" + HOST + b"\r\n" + _hidden(token)
    assert [a.status for a in _exchange(served, pipelined).answers] == [200, 404]
    assert _processed(served, token)
    # Coding names are case-insensitive and OWS surrounds field values (RFC 9112 §5.1,
    # §7): the body is read, and the application judges it.
    chunked = _post(b"Transfer-Encoding:\t Chunked \r\n", b"2;ext=1\r\n{}\r\n" + TERMINATOR)
    answers = _exchange(served, chunked).answers
    assert [a.status for a in answers] == [400]
    assert b"malformed" in answers[0].body
    # HTTP/1.0 needs no Host, and closes after its answer.
    old = _exchange(served, b"GET /acme/directory HTTP/1.0\r\n\r\n")
    assert [a.status for a in old.answers] == [200]
    assert old.closed


def test_a_head_trickled_past_the_cap_is_431(served: ServedCertctl) -> None:
    # One field line that never ends, in small writes: the parser never hands it over, so
    # only the count of the reads that lie inside the head can stop it.
    conn = _tls(served)
    with conn:
        conn.sendall(b"GET /acme/directory HTTP/1.1\r\n" + HOST + b"X-Pad: ")
        sent = 0
        try:
            while sent <= HEAD_MAX_BYTES * 2:
                conn.sendall(b"a" * 4096)
                sent += 4096
                time.sleep(0.002)
        except OSError:
            pass  # closed while sending
        conn.settimeout(READ_WINDOW_S)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
    assert [a.status for a in _parse_answers(received)] == [431]
