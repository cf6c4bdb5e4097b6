"""A deliberately small HTTP/1.1 client for http-01 (RFC 9112), over a pinned ``Connection``.

Hand-written instead of httpx so the socket is provably the one ``Network.connect`` opened
to a checked address. It sends one GET with ``Connection: close``, reads a bounded response
head, and reads a body of at most ``max_body`` bytes (Content-Length, chunked, or until EOF).
Anything malformed is a ``connection`` problem; nothing here follows redirects.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final

from certctl.domain.errors import AcmeError, ProblemType
from certctl.va.net import Connection

USER_AGENT: Final = "certctl-va/1"
MAX_HEADERS: Final = 100

_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\r\n]*)?")
_FIELD_NAME: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2 token
_DIGITS: Final = re.compile(r"[0-9]{1,12}")  # str.isdigit() would accept "²"
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,8})(?:[ \t]*;[^\r\n]*)?")


@dataclass(frozen=True)
class ResponseHead:
    status: int
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


async def send_get(conn: Connection, host_header: str, path: str) -> ResponseHead:
    """Send ``GET path`` and read the response head."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    conn.writer.write(request.encode("ascii"))
    try:
        await conn.writer.drain()
        raw = await conn.reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _protocol_error("response headers too large") from None
    except asyncio.IncompleteReadError:
        raise _protocol_error("connection closed before a complete response head") from None
    except OSError as exc:
        raise _protocol_error(f"connection error: {exc.__class__.__name__}") from None
    return _parse_head(raw)


def _parse_head(raw: bytes) -> ResponseHead:
    lines = raw[:-4].split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise _protocol_error("invalid HTTP status line")
    if len(lines) - 1 > MAX_HEADERS:
        raise _protocol_error("too many response headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        # RFC 9112 §5.2: obsolete line folding and malformed names are refused, not guessed.
        if not sep or _FIELD_NAME.fullmatch(name) is None:
            raise _protocol_error("malformed response header")
        text = value.strip(b" \t").decode("latin-1")
        headers.append((name.decode("ascii").lower(), text))
    return ResponseHead(int(status.group(1)), tuple(headers))


async def read_body(conn: Connection, head: ResponseHead, max_body: int) -> bytes:
    """Read the body of ``head``; more than ``max_body`` bytes is ``incorrectResponse``."""
    try:
        return await _read_body(conn.reader, head, max_body)
    except asyncio.IncompleteReadError:
        raise _protocol_error("connection closed before the end of the response body") from None
    except asyncio.LimitOverrunError:
        raise _protocol_error("malformed chunked response body") from None
    except OSError as exc:
        raise _protocol_error(f"connection error: {exc.__class__.__name__}") from None


async def _read_body(reader: asyncio.StreamReader, head: ResponseHead, max_body: int) -> bytes:
    encoding = head.header("transfer-encoding")
    # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length.
    if encoding is not None:
        if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            return await _read_chunked(reader, max_body)
        return await _read_to_eof(reader, max_body)
    lengths = {value.strip() for key, value in head.headers if key == "content-length"}
    if not lengths:
        return await _read_to_eof(reader, max_body)
    if len(lengths) != 1 or _DIGITS.fullmatch(next(iter(lengths))) is None:
        raise _protocol_error("invalid Content-Length")
    length = int(next(iter(lengths)))
    if length > max_body:
        raise _too_large(max_body)
    return await reader.readexactly(length)


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise _protocol_error("malformed chunk size")
        size = int(match.group(1), 16)
        if size == 0:
            return bytes(body)  # trailers are not needed; the connection is closed after
        if len(body) + size > max_body:
            raise _too_large(max_body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _protocol_error("malformed chunk")


async def _read_to_eof(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while chunk := await reader.read(max_body + 1 - len(body)):
        body += chunk
        if len(body) > max_body:
            raise _too_large(max_body)
    return bytes(body)


def _too_large(max_body: int) -> AcmeError:
    return AcmeError(ProblemType.INCORRECT_RESPONSE, f"response body larger than {max_body} bytes")


def _protocol_error(detail: str) -> AcmeError:
    return AcmeError(ProblemType.CONNECTION, f"invalid HTTP response: {detail}")
