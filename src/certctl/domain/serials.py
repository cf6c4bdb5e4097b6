"""Certificate serial numbers in one canonical form.

RFC 5280 §4.1.2.2 and CA/B BR §7.1: positive, at most 20 octets, at least 64 bits of CSPRNG
output. We draw 159 random bits (so the DER INTEGER never needs a 21st octet) and store and
compare serials everywhere as lower-case hex without leading zeros.
"""

from __future__ import annotations

from certctl.domain import entropy
from certctl.domain.errors import malformed

SERIAL_BITS = 159
MAX_SERIAL_OCTETS = 20


def new_serial() -> int:
    """A fresh serial: 20 random bytes from the CSPRNG, top bit cleared, never zero."""
    while True:
        value = int.from_bytes(entropy.token_bytes(20), "big") >> 1
        if value:
            return value


def canonical_serial(value: int) -> str:
    if value <= 0:
        raise ValueError("serial numbers are positive")
    return format(value, "x")


def parse_serial_hex(text: str) -> int:
    """Accept hex with optional colons and leading zeros (at most 20 octets of value);
    anything else is malformed."""
    cleaned = text.replace(":", "").strip().lower()
    if not cleaned or len(cleaned) > 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise malformed("serial must be hexadecimal")
    value = int(cleaned, 16)
    if value <= 0:
        raise malformed("serial must be positive")
    if value.bit_length() > MAX_SERIAL_OCTETS * 8:
        # RFC 5280 §4.1.2.2: no conforming certificate has a longer serial.
        raise malformed("serial is longer than 20 octets")
    return value
