"""Stateless MAC-signed nonces (RFC 8555 §6.5)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from certctl.acme.nonce import NONCE_BYTES, NONCE_CHARS, NonceCodec
from certctl.domain.errors import AcmeError, ProblemType
from tests.unit.acme.jose_helpers import b64u

KEY = bytes(range(32))
TTL = timedelta(minutes=10)
START = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def codec(clock: FakeClock) -> NonceCodec:
    return NonceCodec(KEY, TTL, clock)


def _decode(nonce: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))


def _rejects(codec: NonceCodec, nonce: object) -> None:
    with pytest.raises(AcmeError) as info:
        codec.check(nonce)  # type: ignore[arg-type]
    assert info.value.type is ProblemType.BAD_NONCE


def test_issue_and_check(codec: NonceCodec) -> None:
    nonce = codec.issue()
    assert len(nonce) == NONCE_CHARS == 54
    assert codec.check(nonce) == START.replace(microsecond=0) + TTL


def test_layout(codec: NonceCodec) -> None:
    raw = _decode(codec.issue())
    assert len(raw) == NONCE_BYTES == 40
    expiry = int.from_bytes(raw[:8], "big")
    assert expiry == int((START + TTL).timestamp())
    assert raw[24:] == hashlib.blake2b(raw[:24], key=KEY, digest_size=16).digest()


def test_nonces_are_unique(codec: NonceCodec) -> None:
    nonces = {codec.issue() for _ in range(1000)}
    assert len(nonces) == 1000


def test_valid_until_expiry(codec: NonceCodec, clock: FakeClock) -> None:
    nonce = codec.issue()
    expiry = codec.check(nonce)
    clock.now = expiry - timedelta(microseconds=1)
    assert codec.check(nonce) == expiry
    clock.now = expiry
    _rejects(codec, nonce)


def test_expired(codec: NonceCodec, clock: FakeClock) -> None:
    nonce = codec.issue()
    clock.now = START + TTL + timedelta(seconds=1)
    _rejects(codec, nonce)


def test_naive_clock_is_utc() -> None:
    naive = FakeClock(START.replace(tzinfo=None))
    codec = NonceCodec(KEY, TTL, naive)
    assert codec.check(codec.issue()) == START.replace(microsecond=0) + TTL


@pytest.mark.parametrize("index", [0, 7, 8, 23, 24, 39])
def test_tampered_byte_rejected(codec: NonceCodec, index: int) -> None:
    raw = bytearray(_decode(codec.issue()))
    raw[index] ^= 0x01
    _rejects(codec, b64u(bytes(raw)))


def test_extended_expiry_rejected(codec: NonceCodec) -> None:
    raw = _decode(codec.issue())
    later = (int.from_bytes(raw[:8], "big") + 3600).to_bytes(8, "big")
    _rejects(codec, b64u(later + raw[8:]))


def test_other_key_rejected(codec: NonceCodec, clock: FakeClock) -> None:
    other = NonceCodec(bytes(32), TTL, clock)
    _rejects(codec, other.issue())


def test_forged_with_correct_layout_rejected(codec: NonceCodec) -> None:
    expiry = int((START + TTL).timestamp()).to_bytes(8, "big")
    _rejects(codec, b64u(expiry + bytes(32)))


@pytest.mark.parametrize("length", [0, 1, 24, 39, 41, 80])
def test_wrong_length_rejected(codec: NonceCodec, length: int) -> None:
    _rejects(codec, b64u(bytes(length)))


def test_truncated_and_extended_strings_rejected(codec: NonceCodec) -> None:
    nonce = codec.issue()
    _rejects(codec, nonce[:-1])
    _rejects(codec, nonce + "A")
    _rejects(codec, nonce + "==")


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "!" * 54, " " * 54, "A" * 53 + "=", "\u00e9" * 54, "A" * 10_000, None, 42],
)
def test_garbage_rejected(codec: NonceCodec, garbage: object) -> None:
    _rejects(codec, garbage)


def test_non_canonical_encoding_rejected(codec: NonceCodec) -> None:
    nonce = codec.issue()
    # 40 octets leave 4 unused bits in the 54th character; setting one is a second spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(nonce[-1])
    assert last & 0x0F == 0
    _rejects(codec, nonce[:-1] + alphabet[last | 0x01])


def test_configuration_errors() -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError, match="key"):
        NonceCodec(b"short", TTL, clock)
    with pytest.raises(ValueError, match="key"):
        NonceCodec(bytes(65), TTL, clock)
    with pytest.raises(ValueError, match="ttl"):
        NonceCodec(KEY, timedelta(0), clock)


def test_random_parts_never_repeat_across_pool_refills(codec: NonceCodec) -> None:
    # Random octets come from a pool drawn from the kernel a batch at a time: refills
    # must not hand out the same octets twice, and every nonce must still check.
    from certctl.acme import nonce as module

    issued = [codec.issue() for _ in range(module._POOL_NONCES * 3 + 7)]
    randoms = {_decode(n)[8:24] for n in issued}
    assert len(randoms) == len(issued)
    for n in issued:
        codec.check(n)


def test_nonces_minted_in_threads_are_all_distinct(codec: NonceCodec) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [codec.issue() for _ in range(300)], range(8)))
    issued = [n for batch in batches for n in batch]
    assert len(set(issued)) == len(issued) == 2400
