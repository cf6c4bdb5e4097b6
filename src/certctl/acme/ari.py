"""ACME Renewal Information (RFC 9773): the certificate identifier and the window math.

The identifier (§4.1) is base64url(AKI keyIdentifier) "." base64url(serial's DER INTEGER
content octets). The window follows the design notes: a bound renewal policy renews in
[notAfter - days, notAfter - days/2]; otherwise in the last third of the validity; an
expired or revoked certificate gets a window that has already begun, so clients renew now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from certctl.acme.b64 import b64url_decode, b64url_encode
from certctl.domain.errors import malformed

MAX_AKI_BYTES = 64


@dataclass(frozen=True)
class CertId:
    aki: bytes
    serial: int


def serial_octets(serial: int) -> bytes:
    """DER INTEGER content octets of a positive serial (a 0x00 pad when the top bit is set)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def encode_cert_id(aki: bytes, serial: int) -> str:
    return f"{b64url_encode(aki)}.{b64url_encode(serial_octets(serial))}"


def parse_cert_id(text: str) -> CertId:
    """Strict: two non-empty strict-base64url parts, a positive, minimally encoded serial."""
    aki_text, sep, serial_text = text.partition(".")
    if not sep or not aki_text or not serial_text or "." in serial_text or len(text) > 200:
        raise malformed("renewalInfo identifier must be base64url(AKI).base64url(serial)")
    aki, raw = b64url_decode(aki_text), b64url_decode(serial_text)
    if len(aki) > MAX_AKI_BYTES or not raw or len(raw) > 21:
        raise malformed("renewalInfo identifier has an impossible length")
    if raw[0] & 0x80 or (len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80):
        raise malformed("serial must be a positive, minimally encoded DER integer")
    serial = int.from_bytes(raw, "big")
    if serial == 0:
        raise malformed("serial must be positive")
    return CertId(aki, serial)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def renewal_window(
    *,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    policy_days: int | None = None,
    revoked: bool = False,
    shifted_end: datetime | None = None,
) -> Window:
    """RFC 9773 §4.2 suggested window. ``shifted_end`` is an operator's ``ari shift``: the
    window ends no later than it (incident response pulls renewals earlier)."""
    if revoked:
        # RFC 9773 §4.2: a window entirely in the past means "renew immediately".
        return Window(now - timedelta(hours=2), now - timedelta(hours=1))
    if now >= not_after:
        return Window(now, now + timedelta(days=1))  # design notes: past expiry
    if policy_days is not None and policy_days > 0:
        days = timedelta(days=policy_days)
        start, end = not_after - days, not_after - days / 2
    else:
        third = (not_after - not_before) / 3
        start, end = not_after - third, not_after
    start = max(start, not_before)
    if shifted_end is not None and shifted_end < end:
        end = max(shifted_end, now)
        start = min(start, end - timedelta(minutes=1))
    return Window(start, end)
