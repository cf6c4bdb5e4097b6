"""Structured logs: JSON lines, and one line per HTTP request (method, path, status, ms)."""

from __future__ import annotations

import json
import logging
import sys
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certctl.fastpath import QuickAnswer, QuickRequest

_ACCESS = logging.getLogger("certctl.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RequestLogMiddleware:
    """Pure ASGI (no per-request framework machinery): one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._quick = getattr(app, "answer_now", None)

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        """The protocol's quick path (``certctl.fastpath``), logged like any request."""
        if self._quick is None:
            return None
        started = perf_counter()
        answer: QuickAnswer | None = self._quick(request)
        if answer is not None:
            _log(request.method, request.path, answer.status, started, request.client)
        return answer

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


def _log(
    method: str, path: str, status: int, started: float, client: tuple[str, int] | None
) -> None:
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "ms": round((perf_counter() - started) * 1000, 2),
        "client": client[0] if client else None,
    }
    _ACCESS.info("request", extra={"fields": fields})
