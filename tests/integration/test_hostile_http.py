"""Hostile HTTP at the socket level: slow heads and slow bodies are cut off, and the server
keeps answering everyone else meanwhile."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from certctl.cli._protocol import HEAD_TIMEOUT_S
from certctl.wfe.routes import BODY_TIMEOUT_S
from tests.support.server import ServedCertctl


@pytest.fixture(scope="module")
def database_url() -> None:
    """Socket behaviour does not depend on the store: SQLite only."""
    return None


def _tls(served: ServedCertctl) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(served.root_pem_path))
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=60)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_after(conn: ssl.SSLSocket) -> float:
    """Seconds until the server closes the connection (EOF or reset)."""
    started = time.monotonic()
    try:
        while conn.recv(4096):
            pass
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        conn.close()
    return time.monotonic() - started


def _in_thread(work: Callable[[], float]) -> tuple[threading.Thread, list[float]]:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    return thread, out


def test_slow_head_and_slow_body_are_cut_off(served: ServedCertctl) -> None:
    def slow_head() -> float:
        conn = _tls(served)
        conn.sendall(b"GET /acme/directory HTTP/1.1\r\nHost: x\r\n")  # never finishes
        return _closed_after(conn)

    def slow_body(framing: bytes, first: bytes) -> Callable[[], float]:
        def send() -> float:
            conn = _tls(served)
            conn.sendall(
                b"POST /acme/new-order HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/jose+json\r\n" + framing + b"\r\n" + first
            )
            started = time.monotonic()
            with conn:
                reply = conn.recv(4096)
            took = time.monotonic() - started
            head = reply.split(b"\r\n\r\n", 1)[0].lower()
            assert b" 408 " in head.split(b"\r\n", 1)[0], (reply[:100], took)
            assert b"\r\nconnection: close" in head, head  # the rest of the body is not read
            assert b"application/problem+json" in head, head
            return took

        return send

    idle_clients = [_tls(served) for _ in range(50)]  # connections that never speak
    head, head_took = _in_thread(slow_head)
    # A declared length goes the protocol's quick path, a chunked body the ordinary one.
    body, body_took = _in_thread(slow_body(b"Content-Length: 100\r\n", b"{"))
    chunked, chunked_took = _in_thread(slow_body(b"Transfer-Encoding: chunked\r\n", b"1\r\n{\r\n"))
    # Meanwhile, everyone else is served normally.
    trust = ssl.create_default_context(cafile=str(served.root_pem_path))
    with httpx.Client(verify=trust, trust_env=False) as client:
        for _ in range(5):
            assert client.get(served.directory_url).status_code == 200
    head.join(HEAD_TIMEOUT_S + 20)
    body.join(BODY_TIMEOUT_S + 20)
    chunked.join(BODY_TIMEOUT_S + 20)
    assert head_took and HEAD_TIMEOUT_S - 1 <= head_took[0] <= HEAD_TIMEOUT_S + 5
    assert body_took and BODY_TIMEOUT_S - 1 <= body_took[0] <= BODY_TIMEOUT_S + 5
    assert chunked_took and BODY_TIMEOUT_S - 1 <= chunked_took[0] <= BODY_TIMEOUT_S + 5
    for conn in idle_clients:
        conn.settimeout(HEAD_TIMEOUT_S + 10)
        assert _closed_after(conn) < HEAD_TIMEOUT_S + 10
