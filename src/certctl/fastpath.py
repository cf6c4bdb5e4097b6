"""Answers given straight from the HTTP protocol, without an ASGI request cycle.

The requests asked most (directory, newNonce, a cached OCSP answer, /health) need
nothing but memory: no body, no store, no thread. Building an ASGI scope, a
request-response cycle and a task for each costs ten times what answering them does
(measured: about 200 µs against 20 µs of server CPU per directory GET), so the protocol
class first offers every bodiless GET or HEAD to ``answer_now`` of the application. An
answer is written as it is; ``None`` sends the request the ordinary way, through ASGI,
which stays the reference behaviour: a quick answer must be byte for byte what the
ordinary route would send, bar the Date header and the nonce.

POSTs with a declared length are offered to ``accept_post`` once their head is parsed.
An application that takes one returns a ``QuickPost``: the protocol gathers the body
(within ``body_timeout``) and writes what ``answer`` returns. ``answer`` runs on the event
loop when the post has no ``executor`` (the application takes those only when their
answer waits on nothing but local work), else on that executor, while later requests of
the connection wait their turn. An answer made on the loop may still have to wait for
something before it leaves (``held``: the disk, for a store that syncs its commits in
groups); later requests of the connection wait for that too.

This module is the seam only; it imports nothing of certctl's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Executor
from http import HTTPStatus
from typing import NamedTuple, Protocol


class QuickRequest(NamedTuple):
    """What the protocol knows of a request when its head has been parsed (a tuple: one
    is made per request, and a frozen dataclass costs a setattr call per field)."""

    method: str  # GET or HEAD
    path: str  # percent-decoded, as ASGI's scope["path"]
    query: bytes  # as ASGI's scope["query_string"]
    host: bytes | None  # the Host field's value, if any
    scheme: str  # http or https
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    content_type: bytes | None = None  # POST only
    content_length: int = 0  # POST only: the declared length of the body


class QuickAnswer(NamedTuple):
    status: int
    head: bytes  # status line and header fields, each line ending in CRLF, no blank line
    body: bytes  # sent for GET; for HEAD only its length is (in Content-Length)


class QuickPost(Protocol):
    """A POST the application took at head time."""

    @property
    def executor(self) -> Executor | None:
        """Where ``answer`` runs: None for the event loop."""
        ...

    @property
    def body_timeout(self) -> float:
        """Seconds the whole body may take to arrive."""
        ...

    def answer(self, body: bytes) -> QuickAnswer:
        """The answer to the request with its whole ``body``; never raises."""
        ...

    def too_slow(self) -> QuickAnswer:
        """The answer when the body did not arrive in time (the connection then closes)."""
        ...

    def held(self) -> asyncio.Future[None] | None:
        """After ``answer`` ran on the event loop: None to write the answer now, else a
        future of the loop to write it after (the connection ends if that fails)."""
        ...


class QuickResponder(Protocol):
    def answer_now(self, request: QuickRequest) -> QuickAnswer | None: ...

    def accept_post(self, request: QuickRequest) -> QuickPost | None: ...


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def render(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> QuickAnswer:
    """A QuickAnswer from a status, header fields and a body, with Content-Length where
    one is allowed (RFC 9110 §8.6: never in a 1xx or 204 answer; 304 as Starlette does)."""
    lines = [_STATUS_LINES[status]]
    lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    if status >= 200 and status not in (204, 304):
        lines.append(b"content-length: %d\r\n" % len(body))
    return QuickAnswer(status, b"".join(lines), body)


def render_raw(status: int, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes) -> QuickAnswer:
    """A QuickAnswer from header fields already encoded (a Starlette Response's
    ``raw_headers``, which carry their own Content-Length)."""
    lines = [_STATUS_LINES[status]]
    for name, value in raw_headers:
        lines += (name, b": ", value, b"\r\n")
    return QuickAnswer(status, b"".join(lines), body)
