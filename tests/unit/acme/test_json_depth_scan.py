"""The JSON depth bound (certctl.acme.jws) scans in linear time and still counts exactly.

A hostile probe froze the server with a 64 KiB body: an unterminated string of escaped
quotes made the old string-stripping regex retry at every quote (quadratic, 14 s of CPU
with the GIL held). The bounds below are not performance targets: the old code misses the
64 KiB one by more than ten times and the 1 MiB one by hours, so they tell a linear scan
from a quadratic one whatever the machine; a linear scan takes milliseconds.
"""

from __future__ import annotations

import json
import time

import pytest

from certctl.acme.jws import MAX_JSON_DEPTH, parse_jws, strict_json_object
from certctl.domain.errors import AcmeError, ProblemType

# The probe's body: more brackets than levels, then a string that never ends.
PROBE = b"{" * 33 + b'"' + b'\\"' * 32_000
QUOTES_64K = b'\\"' * 32_000
QUOTES_1M = b'\\"' * 500_000


def _refused(data: bytes) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        strict_json_object(data, "body")
    assert info.value.type is ProblemType.MALFORMED, info.value
    return info.value


def _hostile(quotes: bytes) -> list[bytes]:
    """Bodies past the quick bracket count whose scan must walk the string of ``quotes``."""
    deep = b"[" * (MAX_JSON_DEPTH + 1)
    return [
        b"{" * 33 + b'"' + quotes,  # the probe's shape
        b'"' + quotes + deep,  # the string first: nothing else stops the scan
        b"[" * 20 + b'"' + quotes + b"[" * 20,
        b'{"a": "' + quotes + b'", "b": ' + deep,  # terminated, then too deep
        b'"' + quotes.replace(b'"', b"\\") + deep,  # escaped backslashes instead
    ]


def _refused_within(data: bytes, seconds: float) -> None:
    started = time.monotonic()
    _refused(data)
    took = time.monotonic() - started
    assert took < seconds, f"{len(data)} octets took {took:.1f} s: not a linear scan"


@pytest.mark.parametrize("data", _hostile(QUOTES_64K))
def test_64k_of_escaped_quotes_is_refused_at_once(data: bytes) -> None:
    _refused_within(data, 1.0)


@pytest.mark.parametrize("data", _hostile(QUOTES_1M))
def test_1m_of_escaped_quotes_is_refused_at_once(data: bytes) -> None:
    # The old quadratic scan needs hours here; a linear one a fraction of a second.
    _refused_within(data, 5.0)


def test_the_probe_body_is_malformed_nesting() -> None:
    assert "nested deeper than 32 levels" in _refused(PROBE).detail


def test_the_probe_as_a_request_body_is_malformed() -> None:
    started = time.monotonic()
    with pytest.raises(AcmeError) as info:
        parse_jws(PROBE)
    assert info.value.type is ProblemType.MALFORMED
    assert time.monotonic() - started < 1.0


# --- the scan still counts exactly ------------------------------------------------------


def _nest(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    "string",
    [
        rb'"\\"',  # an escaped backslash, then the closing quote
        rb'"\\\\"',
        rb'"\"[{\"\\"',  # escaped quotes around brackets
        rb'"\u005b\u007b"',
        b'"' + b"[{" * 40 + b'"',
        b'"' + "é[€".encode() + b'"',
    ],
)
def test_strings_end_where_json_says(string: bytes) -> None:
    # After the string, the limit is counted exactly: one level fewer than the bound
    # (the object takes one) is fine, one more is refused.
    fits = b'{"s": ' + string + b', "a": ' + _nest(MAX_JSON_DEPTH - 1) + b"}"
    assert isinstance(strict_json_object(fits, "body")["s"], str)
    too_deep = b'{"s": ' + string + b', "a": ' + _nest(MAX_JSON_DEPTH) + b"}"
    assert "nested deeper" in _refused(too_deep).detail


def test_brackets_in_keys_and_many_strings_do_not_count() -> None:
    obj = {"[" * 50: ["{" * 50, "]" * 50], "k": [[["x"] * 100]]}
    assert strict_json_object(json.dumps(obj).encode(), "body") == obj


def test_unterminated_string_is_malformed() -> None:
    _refused(b'{"a": ' + _nest(20) + b', "b": "' + b"[" * 40)
    _refused(b'{"a": "\\' + b"[" * 40)  # a backslash as the last character
