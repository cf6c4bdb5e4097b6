"""The HTTP protocol class for uvicorn, with two changes for an Internet-facing server.

1. A request head must arrive within HEAD_TIMEOUT_S of the connection opening (or of the
   first byte of a later request on a keep-alive connection): uvicorn itself never times
   out a client that opens a connection and sends its headers slowly or not at all
   (slowloris), so thousands of such connections could pin the server.
2. On shutdown, idle keep-alive connections are aborted instead of closed. Over TLS a
   close waits for the peer's close_notify, and an idle client never sends one, so a
   SIGTERM would sit out the whole graceful timeout. Connections with a request in flight
   still finish it first (uvicorn marks them keep_alive=False and closes afterwards).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S = 10.0


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
