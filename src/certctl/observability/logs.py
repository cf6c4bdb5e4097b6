"""Structured logs: JSON lines, and one line per HTTP request (method, path, status, ms).

Access lines are the only logs written per request, so they take a cheaper road than
the rest (measured: at INFO they were almost half of the server's CPU for a directory
GET): their record is built without the caller lookup logging does for every record,
and they are written in batches, at least every ``ACCESS_FLUSH_S`` seconds, as nginx's
``access_log ... buffer= flush=`` does, instead of one write(2) each. Every other record
is written at once, after the access lines before it, so the order stays as it was
logged; only a process killed outright loses the last ``ACCESS_FLUSH_S`` of access lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from concurrent.futures import Executor
from time import perf_counter
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certctl.fastpath import QuickAnswer, QuickPost, QuickRequest

ACCESS_LOGGER = "certctl.access"
# What every access line says between its time and its method, as json.dumps spells it.
_ACCESS_FIXED = f'","level":"info","logger":"{ACCESS_LOGGER}","msg":"request","method":'
_json_str = json.encoder.encode_basestring_ascii  # json.dumps of a str (ensure_ascii)
ACCESS_FLUSH_S = 0.25
ACCESS_BATCH_LINES = 256
_ACCESS = logging.getLogger(ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))

    def stamp(self, created: float) -> str:
        """Local time to the second, as ``formatTime`` gives it; one strftime a second."""
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(created))
            self._second = second
        return self._stamp


class JsonLinesHandler(logging.StreamHandler[TextIO]):
    """Writes each record's line at once, except access lines, which are batched (see
    the module docstring). A daemon thread flushes the batch when traffic stops."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._batch: list[str] = []
        self._batch_since = 0.0
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="access-log", daemon=True)
        self._ticker.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if record.name == ACCESS_LOGGER and record.levelno < logging.WARNING:
                if not self._batch:
                    self._batch_since = time.monotonic()
                self._batch.append(line)
                if len(self._batch) < ACCESS_BATCH_LINES:
                    return
                line = ""
            self._write(line)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def access(self, method: str, path: str, status: int, ms: float, client: str | None) -> None:
        """An access line without a LogRecord: the JSON ``format`` would write for the
        record ``_log`` makes, spelled out (a dict and ``json.dumps`` per request cost a
        tenth of a directory GET; ``test_logs`` holds the two to the same bytes)."""
        formatter = self.formatter
        if not isinstance(formatter, JsonFormatter):
            raise TypeError("JsonLinesHandler needs a JsonFormatter")
        line = "".join(
            (
                '{"ts":"',
                formatter.stamp(time.time()),
                _ACCESS_FIXED,
                _json_str(method),
                ',"path":',
                _json_str(path),
                ',"status":',
                str(status),
                ',"ms":',
                repr(ms),
                ',"client":',
                "null" if client is None else _json_str(client),
                "}\n",
            )
        )
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if not self._batch:
                self._batch_since = time.monotonic()
            self._batch.append(line)
            if len(self._batch) >= ACCESS_BATCH_LINES:
                self._write("")

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._write("")

    def _write(self, line: str) -> None:
        """Write the batch and ``line`` in one call (the caller holds the lock)."""
        if self._batch:
            line = "".join(self._batch) + line
            self._batch.clear()
        if line:
            self.stream.write(line)
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _tick(self) -> None:
        while not self._stop.wait(ACCESS_FLUSH_S / 2):
            if self._batch and time.monotonic() - self._batch_since >= ACCESS_FLUSH_S:
                self.flush()


def configure_logging(level: str) -> None:
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RequestLogMiddleware:
    """Pure ASGI (no per-request framework machinery): one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._quick = getattr(app, "answer_now", None)
        self._quick_post = getattr(app, "accept_post", None)

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        """The protocol's quick path (``certctl.fastpath``), logged like any request."""
        if self._quick is None:
            return None
        started = perf_counter()
        answer: QuickAnswer | None = self._quick(request)
        if answer is not None:
            _log(request.method, request.path, answer.status, started, request.client)
        return answer

    def accept_post(self, request: QuickRequest) -> QuickPost | None:
        """A POST the protocol's quick path takes (``certctl.fastpath``), logged when
        answered like any request."""
        if self._quick_post is None:
            return None
        post: QuickPost | None = self._quick_post(request)
        return None if post is None else _LoggedPost(post, request, perf_counter())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _log(scope["method"], scope["path"], status, started, scope.get("client"))


class _LoggedPost:
    __slots__ = ("_post", "_request", "_started")

    def __init__(self, post: QuickPost, request: QuickRequest, started: float) -> None:
        self._post = post
        self._request = request
        self._started = started

    @property
    def body_timeout(self) -> float:
        return self._post.body_timeout

    @property
    def executor(self) -> Executor | None:
        return self._post.executor

    def answer(self, body: bytes) -> QuickAnswer:
        return self._logged(self._post.answer(body))

    def too_slow(self) -> QuickAnswer:
        return self._logged(self._post.too_slow())

    def held(self) -> asyncio.Future[None] | None:
        return self._post.held()

    def _logged(self, answer: QuickAnswer) -> QuickAnswer:
        request = self._request
        _log(request.method, request.path, answer.status, self._started, request.client)
        return answer


def _log(
    method: str, path: str, status: int, started: float, client: tuple[str, int] | None
) -> None:
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    ms = round((perf_counter() - started) * 1000, 2)
    address = client[0] if client else None
    handler = _only_handler()
    if handler is not None:
        handler.access(method, path, status, ms, address)
    else:  # another handler is listening (a test's, an embedder's): an ordinary record
        fields = {"method": method, "path": path, "status": status, "ms": ms, "client": address}
        _ACCESS.info("request", extra={"fields": fields})


def _only_handler() -> JsonLinesHandler | None:
    """Our handler, when no other would see an access record: none on the access logger
    or on the loggers between it and the root (``certctl``), which an ordinary record
    would reach on its way up, and none but ours on the root."""
    if _ACCESS.filters:
        return None
    logger: logging.Logger | None = _ACCESS
    while logger is not None and logger is not logging.root:
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or not isinstance(handlers[0], JsonLinesHandler):
        return None
    handler = handlers[0]
    if handler.filters or handler.level > logging.INFO:
        return None
    return handler if isinstance(handler.formatter, JsonFormatter) else None
