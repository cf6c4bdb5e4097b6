"""Strict base64url (RFC 4648 §5, RFC 7515 §2)."""

from __future__ import annotations

import base64
import os

import pytest

from certctl.acme.b64 import b64url_decode, b64url_encode
from certctl.domain.errors import AcmeError, ProblemType


@pytest.mark.parametrize("length", range(12))
def test_round_trip(length: int) -> None:
    data = os.urandom(length)
    text = b64url_encode(data)
    assert "=" not in text
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data


def test_url_safe_alphabet_is_used() -> None:
    assert b64url_encode(b"\xfb\xff\xbf") == "-_-_"
    assert b64url_decode("-_-_") == b"\xfb\xff\xbf"


def test_empty_string_is_empty_bytes() -> None:
    assert b64url_decode("") == b""


def _rejects(text: str) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        b64url_decode(text)
    assert info.value.type is ProblemType.MALFORMED
    return info.value


@pytest.mark.parametrize("text", ["AA==", "AAA=", "AA=", "=", "AAAA===="])
def test_padding_rejected(text: str) -> None:
    _rejects(text)


@pytest.mark.parametrize("text", ["+/+/", "AA+A", "AA/A", "-_+/"])
def test_standard_alphabet_rejected(text: str) -> None:
    _rejects(text)


@pytest.mark.parametrize("text", [" AAAA", "AAAA ", "AA AA", "AAAA\n", "AA\tAA", "AA\r\nAA"])
def test_whitespace_rejected(text: str) -> None:
    _rejects(text)


@pytest.mark.parametrize("text", ["A", "AAAAA", "AAAAAAAAA"])
def test_impossible_length_rejected(text: str) -> None:
    _rejects(text)


@pytest.mark.parametrize("text", ["AB", "AAB", "AAAAAB", "-_-_AAF", "QR"])
def test_non_canonical_trailing_bits_rejected(text: str) -> None:
    # "AB" and "AA" would both decode to b"\x00" if the unused low bits were ignored.
    error = _rejects(text)
    assert "non-canonical" in error.detail


@pytest.mark.parametrize("text", ["AAA\u00e9", "AAA\u0663", "AA.A", "AA%3D", "AA\x00A"])
def test_foreign_characters_rejected(text: str) -> None:
    _rejects(text)


def test_non_string_rejected() -> None:
    value: object = b"AAAA"
    with pytest.raises(AcmeError) as info:
        b64url_decode(value)  # type: ignore[arg-type]
    assert info.value.type is ProblemType.MALFORMED
