"""The HTTP protocol class for uvicorn, with the changes an Internet-facing server needs.

1. A request head must arrive within HEAD_TIMEOUT_S of the connection opening (or of the
   first byte of a later request on a keep-alive connection): uvicorn itself never times
   out a client that opens a connection and sends its headers slowly or not at all
   (slowloris), so thousands of such connections could pin the server.
2. On shutdown, idle keep-alive connections are aborted instead of closed. Over TLS a
   close waits for the peer's close_notify, and an idle client never sends one, so a
   SIGTERM would sit out the whole graceful timeout. Connections with a request in flight
   still finish it first (uvicorn marks them keep_alive=False and closes afterwards).
3. Message framing is checked before a request reaches the application, so that no
   intermediary in front of certctl can disagree with it about where a request ends
   (request smuggling, RFC 9112 §11.2). llhttp, uvicorn's parser, already refuses
   Content-Length with Transfer-Encoding, repeated or signed Content-Length, bare LF and
   obs-fold; on top of that this class refuses (400, then closes the connection):
   Transfer-Encoding other than exactly one ``chunked`` (RFC 9112 §6.1, §6.3), which
   llhttp accepts as ``identity, chunked`` or split over two field lines;
   Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1), which llhttp honours, even
   on a keep-alive connection; a Content-Length that is not only digits (llhttp lets
   trailing whitespace through, and the raw value reaches the application); a missing
   (HTTP/1.1) or repeated Host (RFC 9112 §3.2: ACME URLs are built from it); and HTTP
   versions other than 1.0 and 1.1 (llhttp accepts ``HTTP/2.0`` and a bare HTTP/0.9
   request line). 400 rather than RFC 9112 §6.1's 501 for an unknown coding: a refused
   request is the client's fault, like every other framing error llhttp reports.
4. Size bounds the parser lacks. A request head over HEAD_MAX_BYTES is answered 431
   (RFC 6585 §5) and the connection closed: llhttp has no limit, and httptools and
   uvicorn would hold the whole head in memory. It is counted twice, from the parser's
   callbacks (the URL and each complete field line) and from the reads that lie wholly
   inside one unfinished head (a field line trickled in forever). Chunk framing (size
   lines, extensions, trailers: RFC 9112 §7.1) of more than CHUNK_FRAMING_MAX_BYTES in one
   request is refused: llhttp skips chunk extensions without counting them, so a client
   could stream extension bytes forever without its body growing (Node.js
   CVE-2024-22019). Reads are parsed in slices of PARSE_SLICE_BYTES, so that each count
   misses at most one slice at either end, however much one transport read returns.
5. A response that starts before the request body has been read to its end carries
   ``Connection: close`` and closes the connection (RFC 9112 §9.3: read the whole body
   or close; §9.6: announce it). uvicorn would keep reading and discarding the rest of
   the body, with no time limit once the application has answered, and a huge declared
   chunk would swallow whatever follows it.
6. A response's status line and header block go out together with its first body bytes,
   in one transport write: uvicorn writes them separately, which over TLS costs a second
   record, a second encryption call and a second system call on every response (measured:
   a quarter of the server's CPU for a directory GET went to those writes).
7. A bodiless GET or HEAD is first offered to the application's ``answer_now``
   (``certctl.fastpath``): the directory, newNonce, cached OCSP answers and /health are
   written from here, with no ASGI scope, cycle or task (a tenth of the CPU). A POST with
   a Content-Length is offered to ``accept_post``; one taken has its body gathered here
   (within the taker's ``body_timeout``, else its ``too_slow`` answer and a close) and
   its answer written when the body is complete. Only when nothing else of the
   connection is in flight and its writes are not backed up, so that answers keep their
   order and a client that never reads cannot grow our buffers; a request through a
   proxy's X-Forwarded-* fields goes the ordinary way, where uvicorn applies them, as
   does one that expects 100-continue or is chunked.
8. A keep-alive connection stays open KEEP_ALIVE_S after its last answer, not uvicorn's
   5 s: a client that reuses a connection idle for as long as the server keeps it (httpx
   and its 5 s expiry, say) sends its request just as the server closes, and a POST lost
   that way is not retried. The idle timer is also stopped at the start of every request,
   so an answer given while a pipelined request was still being parsed cannot leave a
   timer that closes the connection under a later, slower request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from typing import Any

import httptools
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from certctl.fastpath import QuickAnswer, QuickPost, QuickRequest, QuickResponder

HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 30.0  # point 8: above the idle expiry of common HTTP client pools
HEAD_MAX_BYTES = 64 * 1024
CHUNK_FRAMING_MAX_BYTES = 64 * 1024
PARSE_SLICE_BYTES = 16 * 1024
_CLOCK_STEP_S = 0.001

log = logging.getLogger("certctl.http")

_DIGITS = re.compile(rb"[0-9]+")
_VERSIONS = ("1.0", "1.1")
# Fields that send a GET the ordinary way (point 7): a body, an expectation, or a proxy's
# forwarded address and scheme, which uvicorn's middleware applies to the ASGI scope.
_NOT_QUICK = frozenset(
    (b"content-length", b"transfer-encoding", b"expect", b"x-forwarded-for", b"x-forwarded-proto")
)


def _quick_responder(app: Any) -> QuickResponder | None:
    """The innermost ``answer_now`` under uvicorn's and our middleware wrappers."""
    for _ in range(8):
        if app is None:
            return None
        if callable(getattr(app, "answer_now", None)):
            return app  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
    return None


class _RefusedError(Exception):
    """Raised from a parser callback: llhttp stops and uvicorn answers 400."""


class _HeadWithBody:
    """The transport one response cycle writes to (point 6): the head of the response is
    held until the first write of its body, or until the cycle flushes it (a HEAD answer
    has no body write) or closes the connection. Everything else is the connection's."""

    __slots__ = ("_head", "_transport", "holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self.holding = False

    def write(self, data: bytes) -> None:
        if self.holding:
            self.holding = False
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        self.holding = False
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._transport.get_extra_info(name, default)


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    # Deadlines (see "deadlines" below): one timer per connection serves them all.
    _watch: asyncio.TimerHandle | None = None
    _head_deadline: float | None = None
    _post_deadline: float | None = None
    _idle_deadline: float | None = None
    # Between the end of one message and the end of the next head (idle included).
    _in_head = True
    _heads_done = 0
    _messages_done = 0
    _head_bytes = 0  # reads wholly inside the current head
    _head_fields = 0  # its URL and field lines, as the parser hands them over
    # The current message: chunked or not, decoded body bytes, chunk framing bytes.
    _chunked = False
    _body_bytes = 0
    _framing_bytes = 0
    _body_done_cycle: object = None
    _refusal: str | None = None
    _version = "1.1"  # the current head's HTTP version, read by _framing_problem
    _refusal_status = 400
    _quick: QuickResponder | None = None
    _quick_answered = False  # the current message was answered from on_headers_complete
    # A POST taken by the quick path (point 7): its body so far and its deadline.
    _post: QuickPost | None = None
    _post_body: list[bytes]
    _post_keep_alive = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.root_path:
            self._quick = _quick_responder(self.app)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        # Parsed in slices, as if the peer's data had arrived in smaller reads (which it
        # may anyway): the counts below skip a read that crosses a head or message
        # boundary, so how much can go uncounted must not depend on how much one
        # transport read returns (up to 256 KiB over TLS).
        if len(data) <= PARSE_SLICE_BYTES:
            self._parse(data)  # the usual read: one request, or one part of a body
            return
        self._parse(data[:PARSE_SLICE_BYTES])
        for start in range(PARSE_SLICE_BYTES, len(data), PARSE_SLICE_BYTES):
            if self._refusal is not None or self.transport.is_closing():
                return
            self._parse(data[start : start + PARSE_SLICE_BYTES])

    def _parse(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the connection is closing, nothing more is parsed
        in_head, heads, messages, body = (
            self._in_head,
            self._heads_done,
            self._messages_done,
            self._body_bytes,
        )
        super().data_received(data)
        if self._refusal is not None or self.transport.is_closing():
            return
        # Only slices that lie wholly inside one head (or one chunked body) are counted, so
        # the counts are exact; what goes uncounted is at most one slice at each end.
        if in_head and self._in_head and self._heads_done == heads:
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_MAX_BYTES:
                self._refuse(431, f"request head over {HEAD_MAX_BYTES} bytes")
        elif (
            not in_head and not self._in_head and self._chunked and self._messages_done == messages
        ):
            self._framing_bytes += len(data) - (self._body_bytes - body)
            if self._framing_bytes > CHUNK_FRAMING_MAX_BYTES:
                self._refuse(400, f"chunk framing over {CHUNK_FRAMING_MAX_BYTES} bytes")

    def on_message_begin(self) -> None:
        # uvicorn's, but for the ASGI scope, which is built only for a request that goes
        # the ordinary way (_scope_for_asgi): a quick answer needs none.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        if self.timeout_keep_alive_task is not None:  # point 8: no longer idle
            self._unset_keepalive_if_required()
        self._idle_deadline = None
        self._head_bytes = self._head_fields = 0
        self._arm_head_timer()

    def _scope_for_asgi(self) -> None:
        """The scope uvicorn's on_message_begin builds, for its on_headers_complete."""
        self.scope = {  # type: ignore[typeddict-item]  # completed by on_headers_complete
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    # on_url and on_header are uvicorn's, with the head's size counted (point 4); spelled
    # out rather than calling uvicorn's, as they run for every field of every request.
    def on_url(self, url: bytes) -> None:
        self._head_fields += len(url)
        if self._head_fields > HEAD_MAX_BYTES:
            self._head_too_large()
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_fields > HEAD_MAX_BYTES:
            self._head_too_large()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_deadline = None  # the head has arrived (point 1)
        self._in_head = False
        self._heads_done += 1
        problem = self._framing_problem()
        if problem is not None:
            self._refusal = problem
            raise _RefusedError(problem)
        if self._quick is not None and (self._answer_quickly() or self._take_post()):
            return
        self._scope_for_asgi()
        super().on_headers_complete()
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is None or cycle.response_complete:
            return  # an upgrade, which uvicorn handed over without a new cycle
        send = cycle.send
        out = _HeadWithBody(self.transport)
        cycle.transport = out  # type: ignore[assignment]

        async def send_or_close(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                # An answer that starts before the body has ended closes the connection,
                # and says so (Connection: close), so that clients do not reuse it.
                # Requests are parsed in order: once a later one exists, this body has ended.
                ended = self.cycle is not cycle or self._body_done_cycle is cycle
                if not ended:
                    cycle.keep_alive = False
                out.holding = not cycle.response_started
                await send(message)
                return
            try:
                await send(message)
            finally:
                # Written by now, in the same turn of the loop as the body: the next
                # pipelined request's answer cannot come between the two.
                out.flush()

        # The application task has not started yet: it will call this one.
        cycle.send = send_or_close  # type: ignore[method-assign]

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._post is not None:
            self._post_body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._messages_done += 1
        if self._quick_answered:
            self._quick_answered = False
            return
        if self._post is not None:
            self._answer_post()
            return
        self._body_done_cycle = self.cycle
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to every parser error; a refusal of ours carries its reason.
        self._send_and_close(self._refusal_status, self._refusal or msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watch()
        self._drop_post()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._post is not None:
            # A quick POST still arriving is in flight: it is answered, then closed.
            self._post_keep_alive = False
            return
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()

    # -- quick answers (point 7) ---------------------------------------------------

    def _answer_quickly(self) -> bool:
        """Answer the request whose head was just parsed from ``answer_now``; False to
        leave it to the ASGI application."""
        method = self.parser.get_method()
        if method not in (b"GET", b"HEAD") or not self._nothing_in_flight():
            return False
        host = None
        for name, value in self.headers:
            if name == b"host":
                host = value
            elif name in _NOT_QUICK:
                return False
        request = self._quick_request(method, host)
        assert self._quick is not None
        try:
            answer = self._quick.answer_now(request)
        except Exception:
            log.exception("quick answer failed on %s %s", request.method, request.path)
            return False
        if answer is None:
            return False
        self._quick_answered = True
        self._write_quick(answer, send_body=method == b"GET", keep_alive=self._keep_alive())
        return True

    def _take_post(self) -> bool:
        """Offer the POST whose head was just parsed to ``accept_post``; True when taken
        (its body then goes to ``_post_body``, and ``_answer_post`` answers it)."""
        if self.parser.get_method() != b"POST" or self._chunked:
            return False
        if not self._nothing_in_flight():
            return False
        host = content_type = None
        length = -1
        for name, value in self.headers:
            if name == b"host":
                host = value
            elif name == b"content-length":
                length = int(value)  # digits only (_framing_problem)
            elif name == b"content-type":
                if content_type is not None:
                    return False  # the dispatcher decides on a repeated field
                content_type = value
            elif name in _NOT_QUICK:
                return False
        if length < 0:
            return False
        request = self._quick_request(
            b"POST", host, content_type=content_type, content_length=length
        )
        assert self._quick is not None
        try:
            post = self._quick.accept_post(request)
        except Exception:
            log.exception("quick POST refused on %s", request.path)
            return False
        if post is None:
            return False
        self._post = post
        self._post_body = []
        self._post_keep_alive = self._keep_alive()
        self._post_deadline = self.loop.time() + post.body_timeout
        self._watch_until(self._post_deadline)
        return True

    def _answer_post(self) -> None:
        post = self._post
        assert post is not None
        body = b"".join(self._post_body)
        keep_alive = self._post_keep_alive
        self._drop_post()
        if post.executor is not None:
            self._answer_post_later(post, body, keep_alive)
            return
        try:
            answer = post.answer(body)
            held = post.held()
        except Exception:  # answer() handles its own errors: this is a bug of ours
            log.exception("quick POST failed")
            self.transport.abort()
            return
        if held is None:
            self._write_quick(answer, send_body=True, keep_alive=keep_alive)
            return
        # Made on the event loop, the answer waits for the disk (its commits, or what it
        # read, not synced yet) without holding up the loop.
        cycle = self._stand_in(keep_alive)
        held.add_done_callback(lambda done: self._post_held(cycle, answer, done))

    def _answer_post_later(self, post: QuickPost, body: bytes, keep_alive: bool) -> None:
        """Run ``post.answer`` on its executor."""
        assert post.executor is not None
        cycle = self._stand_in(keep_alive)
        try:
            future = self.loop.run_in_executor(post.executor, post.answer, body)
        except RuntimeError:
            # The handler threads are shut down (the server is stopping): no answer can
            # be made, so the connection ends rather than waiting for one.
            log.warning("quick POST dropped: the server is shutting down")
            cycle.response_complete = True
            self.transport.abort()
            return
        future.add_done_callback(lambda done: self._post_answered(cycle, done))

    def _stand_in(self, keep_alive: bool) -> RequestResponseCycle:
        """While a quick POST's answer is to come (made on a thread, or waiting for the
        disk), a cycle of uvicorn's stands for the request as the one in flight, so a
        later request of the connection is queued behind it (uvicorn's pipeline) and
        shutdown waits for it; it completes when the answer is written, and uvicorn then
        starts the next request or the idle timer."""
        cycle = RequestResponseCycle(
            scope={"type": "http", "method": "POST"},  # type: ignore[typeddict-item]
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=False,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.more_body = False
        self.cycle = cycle
        return cycle

    def _post_answered(
        self, cycle: RequestResponseCycle, done: asyncio.Future[QuickAnswer]
    ) -> None:
        try:
            answer = done.result()
        except Exception:  # answer() handles its own errors: this is a bug of ours
            cycle.response_complete = True
            log.exception("quick POST failed")
            self.transport.abort()
            return
        self._write_later(cycle, answer)

    def _post_held(
        self, cycle: RequestResponseCycle, answer: QuickAnswer, done: asyncio.Future[None]
    ) -> None:
        error = done.exception()
        if error is not None:
            # What the answer reports may not survive a crash: it is not sent, and the
            # connection ends (the client retries; the store logged the cause).
            cycle.response_complete = True
            log.error("quick POST not answered: %s", error)
            self.transport.abort()
            return
        self._write_later(cycle, answer)

    def _write_later(self, cycle: RequestResponseCycle, answer: QuickAnswer) -> None:
        cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return  # the client left: nobody reads the answer
        # shutdown() may have turned keep-alive off meanwhile.
        self._write_answer(answer, send_body=True, keep_alive=cycle.keep_alive)
        if not cycle.keep_alive:
            self.transport.close()
        else:
            cycle.on_response()  # the next pipelined request, or uvicorn's idle timer

    def _post_timed_out(self) -> None:
        """The body did not arrive in time: the taker's answer, then a close (point 5)."""
        post = self._post
        if post is None:
            return
        self._drop_post()
        self._refusal = "request body too slow"  # nothing more is parsed
        self._write_quick(post.too_slow(), send_body=True, keep_alive=False)

    def _drop_post(self) -> None:
        self._post = None
        self._post_body = []
        self._post_deadline = None

    def _nothing_in_flight(self) -> bool:
        """No earlier answer is still to come and writes are not backed up: an answer
        written now keeps the order of the connection's answers."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False
        return not (self.flow.write_paused or self.parser.should_upgrade())

    def _keep_alive(self) -> bool:
        # The version as _framing_problem read it for this head (the parser formats a new
        # string on every call).
        return self._version != "1.0" and self.parser.should_keep_alive()

    def _quick_request(
        self,
        method: bytes,
        host: bytes | None,
        *,
        content_type: bytes | None = None,
        content_length: int = 0,
    ) -> QuickRequest:
        parsed = httptools.parse_url(self.url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        return QuickRequest(
            method.decode("ascii"),
            path,
            parsed.query or b"",
            host,
            self.scheme or "http",
            self.client,
            self.server,
            content_type,
            content_length,
        )

    def _write_quick(self, answer: QuickAnswer, *, send_body: bool, keep_alive: bool) -> None:
        self._write_answer(answer, send_body=send_body, keep_alive=keep_alive)
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        else:
            if self.timeout_keep_alive_task is not None:
                self._unset_keepalive_if_required()
            self._idle_deadline = self.loop.time() + self.timeout_keep_alive
            self._watch_until(self._idle_deadline)

    def _write_answer(self, answer: QuickAnswer, *, send_body: bool, keep_alive: bool) -> None:
        out = [answer.head]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        if not keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        if send_body:
            out.append(answer.body)
        self.transport.write(b"".join(out))

    # -- framing -------------------------------------------------------------------

    def _head_too_large(self) -> None:
        self._refusal_status = 431
        self._refusal = f"request head over {HEAD_MAX_BYTES} bytes"
        raise _RefusedError(self._refusal)

    def _framing_problem(self) -> str | None:
        version = self._version = self.parser.get_http_version()
        if version not in _VERSIONS:
            return f"HTTP/{version} is not supported"
        hosts = lengths = 0
        codings: list[bytes] = []
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                lengths += 1
                if not _DIGITS.fullmatch(value):
                    return "Content-Length is not a decimal number"
            elif name == b"transfer-encoding":
                # A list field (RFC 9110 §5.6.1): empty elements are allowed and ignored.
                codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            return "missing or repeated Host"
        # llhttp refuses these two already; checked again so that a parser leniency
        # switched on later cannot reopen them.
        if lengths > 1:
            return "more than one Content-Length"
        if codings and lengths:
            return "Content-Length together with Transfer-Encoding"
        if codings and version == "1.0":
            return "Transfer-Encoding in an HTTP/1.0 request"
        if codings and codings != [b"chunked"]:
            return "Transfer-Encoding other than chunked"
        self._chunked = bool(codings)
        self._body_bytes = self._framing_bytes = 0
        return None

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` and close, from outside the parser (size bounds)."""
        self._refusal = reason
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application may be waiting for this body: it sees a disconnect, and
            # whatever it would answer is dropped (ours has been sent).
            cycle.disconnected = True
            cycle.message_event.set()
        self._send_and_close(status, reason)

    def _send_and_close(self, status: int, reason: str) -> None:
        if self._refusal is not None:  # uvicorn has logged its own parser errors
            fields = {"status": status, "reason": reason, "client": self._peer()}
            log.info("refused request", extra={"fields": fields})
        body = reason.encode("ascii")
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def _peer(self) -> str | None:
        return self.client[0] if self.client else None

    # -- deadlines -----------------------------------------------------------------
    # The head's (point 1), a quick POST body's (point 7) and the idle one after a quick
    # answer (point 8) share one timer per connection, armed for the earliest; when it
    # fires it acts on what has passed and is armed again for what has not. A request
    # then moves deadlines, which are numbers, instead of arming and cancelling two or
    # three timers (measured: 4 µs of a 100 µs directory GET).

    def _arm_head_timer(self) -> None:
        self._head_deadline = self.loop.time() + HEAD_TIMEOUT_S
        self._watch_until(self._head_deadline)

    def _watch_until(self, deadline: float) -> None:
        watch = self._watch
        if watch is not None:
            if watch.when() <= deadline:
                return  # it fires first, then arms itself for this deadline
            watch.cancel()
        # Never armed further than a head's deadline from now: the next request's head
        # deadline is then never earlier than the timer, which a keep-alive connection
        # therefore keeps from one request to the next instead of cancelling and arming
        # one per request. An idle connection's timer fires every HEAD_TIMEOUT_S on the
        # way to its idle deadline, and arms itself again.
        self._watch = self.loop.call_at(
            min(deadline, self.loop.time() + HEAD_TIMEOUT_S), self._on_watch
        )

    def _on_watch(self) -> None:
        self._watch = None
        # The event loop's clock has millisecond steps: a timer may fire a hair early.
        now = self.loop.time() + _CLOCK_STEP_S
        if self._head_deadline is not None and now >= self._head_deadline:
            self._head_deadline = None
            self._head_timed_out()
        if self._post_deadline is not None and now >= self._post_deadline:
            self._post_deadline = None
            self._post_timed_out()
        if self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            self.timeout_keep_alive_handler()
        if self.transport.is_closing():
            return
        pending = [d for d in (self._head_deadline, self._post_deadline, self._idle_deadline) if d]
        if pending:
            self._watch_until(min(pending))

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _head_timed_out(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
