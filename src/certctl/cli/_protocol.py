"""The HTTP protocol class for uvicorn, with one change: on shutdown, idle keep-alive
connections are aborted instead of closed.

Over TLS, a close waits for the peer's close_notify (asyncio's SSL shutdown), and an idle
client never sends one, so a SIGTERM would sit out the whole graceful timeout whenever a
client held a keep-alive connection open. Connections with a request in flight still
finish that request first (uvicorn marks them keep_alive=False and closes after the
response), which is the draining that matters.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()
