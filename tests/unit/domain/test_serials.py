"""Certificate serials in one canonical form (RFC 5280 §4.1.2.2, CA/B BR §7.1)."""

from __future__ import annotations

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.serials import SERIAL_BITS, canonical_serial, new_serial, parse_serial_hex


def test_new_serials_are_positive_and_fit_20_octets_as_der() -> None:
    for _ in range(1000):
        value = new_serial()
        assert 0 < value < 2**SERIAL_BITS == 2**159
        # DER INTEGER: a positive value below 2**159 never needs a 21st (sign) octet.
        der_len = (value.bit_length() + 8) // 8
        assert der_len <= 20


def test_1000_draws_are_distinct_and_use_the_high_bits() -> None:
    draws = [new_serial() for _ in range(1000)]
    assert len(set(draws)) == 1000
    # With 159 random bits, at least one of 1000 draws has bit 158 set (odds 2**-1000).
    assert max(d.bit_length() for d in draws) == 159
    # And at least 64 bits of entropy in practice: no draw is short.
    assert min(d.bit_length() for d in draws) > 64


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (0x0A, "a"),
        (0xABCDEF, "abcdef"),
        (0x0100, "100"),
        (2**159 - 1, "7" + "f" * 39),
    ],
)
def test_canonical_form_is_lower_hex_without_leading_zeros(value: int, text: str) -> None:
    assert canonical_serial(value) == text
    assert parse_serial_hex(text) == value


def test_canonical_form_round_trips_random_serials() -> None:
    for _ in range(200):
        value = new_serial()
        text = canonical_serial(value)
        assert text == text.lower()
        assert not text.startswith("0")
        assert parse_serial_hex(text) == value


@pytest.mark.parametrize("value", [0, -1, -(2**100)])
def test_canonical_form_refuses_non_positive(value: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        canonical_serial(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("00:AB:cd", 0xABCD),
        ("0a:0b", 0x0A0B),
        ("000001", 1),
        ("DEADBEEF", 0xDEADBEEF),
        (" de:ad:be:ef ", 0xDEADBEEF),
        ("7f" + "ff" * 19, 2**159 - 1),
        ("00" * 12 + "ff" * 20, 2**160 - 1),  # 20 octets of value, however padded
    ],
)
def test_parse_accepts_colons_case_and_leading_zeros(text: str, value: int) -> None:
    assert parse_serial_hex(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "::",
        "0",
        "00:00",
        "xyz",
        "0xab",
        "-1",
        "ab cd",
        "12g4",
        "\uff11\uff12",
        "1" + "0" * 40,
        "a" * 65,
    ],
    ids=repr,
)
def test_parse_refuses_junk_as_malformed(text: str) -> None:
    with pytest.raises(AcmeError) as info:
        parse_serial_hex(text)
    assert info.value.type is ProblemType.MALFORMED
