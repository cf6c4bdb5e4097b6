"""Findings of a hostile-input probe of the ACME server, replayed over real sockets: each
request once got a wrong answer (a frozen server, a 500, a stored bad contact, an account
usable without its private key) and must now get the right refusal."""

from __future__ import annotations

import time

import pytest

from tests.integration.wire import Wire, assert_problem

# An unterminated string of escaped quotes past the bracket count: the old depth scan
# spent 14 s of CPU, holding the GIL, on this 64 KiB body.
DEPTH_PROBE = b"{" * 33 + b'"' + b'\\"' * 32_000
STRING_FIRST = b'"' + b'\\"' * 32_000 + b"[" * 33


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(DEPTH_PROBE, "nested deeper than 32 levels", id="probe"),
        pytest.param(STRING_FIRST, "not valid UTF-8 JSON", id="string-first"),
    ],
)
def test_hostile_json_is_refused_at_once(wire: Wire, body: bytes, detail: str) -> None:
    # Not a performance target: the old scan misses this bound by more than ten times.
    started = time.monotonic()
    response = wire.post(wire["newAccount"], body)
    took = time.monotonic() - started
    doc = assert_problem(response, 400, "malformed", wire.directory_url)
    assert detail in doc["detail"], doc
    assert took < 1.0, f"the server spent {took:.1f} s on a {len(body)}-octet body"
    # ... and it still answers.
    assert wire.http.get(wire.directory_url).status_code == 200
