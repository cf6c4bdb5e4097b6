"""The ACME dispatcher's body reader: the cap before reading and while reading, and a
client that leaves mid-body answered as a client error, never a server one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from certctl.domain.errors import AcmeError
from certctl.wfe.routes import _read_body


def _scope(length: str | None) -> dict[str, Any]:
    headers = [(b"content-length", length.encode())] if length is not None else []
    return {"type": "http", "headers": headers}


def _receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def _read(length: str | None, *messages: dict[str, Any], limit: int = 10) -> bytes:
    return asyncio.run(_read_body(_scope(length), _receiver(*messages), limit))


def test_body_in_chunks() -> None:
    chunks = (
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False},
    )
    assert _read("6", *chunks) == b"abcdef"
    assert _read(None, *chunks) == b"abcdef"


@pytest.mark.parametrize("declared", ["11", "+5", "5 ", "-1", "0x5", "\u00b2", "\u0665"])
def test_declared_length_over_the_cap_or_not_digits_is_413_unread(declared: str) -> None:
    with pytest.raises(AcmeError) as err:
        _read(declared)  # no message to receive: it must not try
    assert err.value.http_status == 413


def test_undeclared_body_over_the_cap_is_413() -> None:
    with pytest.raises(AcmeError) as err:
        _read(None, {"type": "http.request", "body": b"x" * 11, "more_body": True})
    assert err.value.http_status == 413


def test_client_leaving_mid_body_is_400() -> None:
    with pytest.raises(AcmeError) as err:
        _read(
            "8",
            {"type": "http.request", "body": b"abcd", "more_body": True},
            {"type": "http.disconnect"},
        )
    assert err.value.http_status == 400
