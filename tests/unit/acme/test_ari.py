"""RFC 9773 cert-id round trip and strictness; window math for every branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certctl.acme.ari import encode_cert_id, parse_cert_id, renewal_window, serial_octets
from certctl.domain.errors import AcmeError

NB = datetime(2026, 1, 1, tzinfo=UTC)
NA = NB + timedelta(days=90)


def test_rfc9773_example_identifier() -> None:
    # RFC 9773 §4.1 example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    # serial 00:87:65:43:21.
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert encode_cert_id(aki, 0x87654321) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").serial == 0x87654321


def test_serial_octets_pad_when_top_bit_set() -> None:
    assert serial_octets(0x7F) == b"\x7f"
    assert serial_octets(0x80) == b"\x00\x80"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "aYhb.",
        ".AIdlQyE",
        "aYhb.AIdl.QyE",
        "aYhb=.AIdlQyE",
        "aYhb.gA",  # 0x80: negative DER integer
        "aYhb.AAE",  # 0x00 0x01: not minimal
        "aYhb.AA",  # zero
    ],
)
def test_malformed_identifiers(bad: str) -> None:
    with pytest.raises(AcmeError):
        parse_cert_id(bad)


def test_policy_window() -> None:
    w = renewal_window(not_before=NB, not_after=NA, now=NB, policy_days=30)
    assert (w.start, w.end) == (NA - timedelta(days=30), NA - timedelta(days=15))


def test_default_window_is_last_third() -> None:
    w = renewal_window(not_before=NB, not_after=NA, now=NB)
    assert (w.start, w.end) == (NA - timedelta(days=30), NA)


def test_expired_certificate_renews_now() -> None:
    now = NA + timedelta(days=1)
    w = renewal_window(not_before=NB, not_after=NA, now=now)
    assert w.start == now and w.end == now + timedelta(days=1)


def test_revoked_certificate_window_is_in_the_past() -> None:
    now = NB + timedelta(days=10)
    w = renewal_window(not_before=NB, not_after=NA, now=now, revoked=True)
    assert w.start < w.end < now


def test_operator_shift_pulls_the_window_earlier() -> None:
    now = NB + timedelta(days=10)
    shift = NB + timedelta(days=20)
    w = renewal_window(not_before=NB, not_after=NA, now=now, shifted_end=shift)
    assert w.end == shift and w.start < w.end
    past = renewal_window(not_before=NB, not_after=NA, now=now, shifted_end=NB)
    assert past.end == now
