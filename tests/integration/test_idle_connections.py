"""Thousands of idle connections do not starve service.

Two thousand TCP connections that never send a byte (not even a TLS ClientHello) and a few
hundred that complete the TLS handshake and then say nothing are held open against one
served certctl (one worker). Meanwhile the directory, a newNonce and a whole newAccount
are answered within a few seconds each. Afterwards the server closes every idle
connection by itself: the handshaked ones when no request head arrives within
HEAD_TIMEOUT_S, the silent ones when the TLS handshake times out (asyncio's and uvloop's
60 s default, which uvicorn does not change).

The server is started with a soft RLIMIT_NOFILE of 1024, the usual default, so that it
has to raise its own limit to hold them all: below the raised limit, accept() fails and
every new client is turned away.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certctl.cli._protocol import HEAD_TIMEOUT_S
from tests.integration.servers import serve
from tests.integration.wire import Wire
from tests.support.gating import require_or_skip
from tests.support.server import ServedCertctl

SILENT = 2000  # TCP only: no TLS handshake
HANDSHAKED = 300  # TLS established, no request
DEFAULT_SOFT_LIMIT = 1024
PROMPT_S = 3.0
# asyncio.constants.SSL_HANDSHAKE_TIMEOUT and uvloop's default: uvicorn passes none.
HANDSHAKE_TIMEOUT_S = 60.0
CLOSE_SLACK_S = 10.0


@pytest.fixture(scope="module")
def database_url() -> None:
    """Connection handling does not depend on the store: SQLite only."""
    return None


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedCertctl]:
    """A server started with the default soft limit, which it must raise itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SILENT + HANDSHAKED + 200
    require_or_skip(
        hard == resource.RLIM_INFINITY or hard >= needed,
        f"hard RLIMIT_NOFILE {hard} is below the {needed} descriptors this test needs",
    )
    with contextlib.ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, DEFAULT_SOFT_LIMIT), hard))
        try:
            server = stack.enter_context(serve(request, tmp_path_factory, None))
        finally:
            # This process holds the client ends: up to the hard limit (the server
            # subprocess has inherited the low soft limit already).
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        yield server


def _server_pid(served: ServedCertctl) -> int:
    return served.pid  # one worker: the process that accepts is this one


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files limit in /proc/<pid>/limits")


def _all_closed_by(sockets: list[socket.socket], deadline: float) -> list[socket.socket]:
    """Wait until the server has closed every socket (EOF or reset); the ones it has not."""
    open_ = set(sockets)
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, data=sock)
        while open_ and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = key.data
                try:
                    if sock.recv(65536):
                        continue  # data (a TLS alert, say): not closed yet
                except (BlockingIOError, ssl.SSLWantReadError):
                    continue  # readable, but no EOF yet (part of a TLS record)
                except OSError:
                    pass  # reset: closed
                selector.unregister(sock)
                open_.discard(sock)
    return list(open_)


def _timed(what: str, took: dict[str, float], started: float) -> None:
    took[what] = round(time.monotonic() - started, 3)


def test_thousands_of_idle_connections_do_not_starve_service(served: ServedCertctl) -> None:
    pid = _server_pid(served)
    baseline = _open_files(pid)
    assert _soft_limit(pid) >= SILENT + HANDSHAKED + baseline, "the server kept a low limit"
    trust = ssl.create_default_context(cafile=str(served.root_pem_path))
    silent: list[socket.socket] = []
    handshaked: list[ssl.SSLSocket] = []
    try:
        silent_at = time.monotonic()
        for _ in range(SILENT):
            silent.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
        handshaked_at = time.monotonic()
        for _ in range(HANDSHAKED):
            raw = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            handshaked.append(trust.wrap_socket(raw, server_hostname="127.0.0.1"))
        opened = time.monotonic()
        # The handshaked ones are the first to go, HEAD_TIMEOUT_S after they were opened.
        assert opened - handshaked_at < HEAD_TIMEOUT_S - PROMPT_S * 2, "opening took too long"
        held = _open_files(pid) - baseline
        assert held >= SILENT + HANDSHAKED - 10, f"the server holds only {held} connections"

        took: dict[str, float] = {}
        wire = Wire(served)  # a new connection, and GET directory
        try:
            started = time.monotonic()
            assert wire.http.get(wire.directory_url).status_code == 200
            _timed("directory", took, started)
            started = time.monotonic()
            assert wire.http.head(wire["newNonce"]).headers.get("replay-nonce")
            _timed("newNonce", took, started)
            started = time.monotonic()
            wire.new_account()
            _timed("newAccount", took, started)
        finally:
            wire.close()
        assert all(t < PROMPT_S for t in took.values()), took
        # Everything above was served while every idle connection was still held.
        assert _open_files(pid) - baseline >= SILENT + HANDSHAKED - 10

        left = _all_closed_by(list(handshaked), opened + HEAD_TIMEOUT_S + CLOSE_SLACK_S)
        assert not left, f"{len(left)} handshaked idle connections still open"
        left = _all_closed_by(silent, silent_at + HANDSHAKE_TIMEOUT_S + CLOSE_SLACK_S)
        assert not left, f"{len(left)} silent connections still open"
        assert _open_files(pid) <= baseline + 5
    finally:
        for sock in [*silent, *handshaked]:
            sock.close()
