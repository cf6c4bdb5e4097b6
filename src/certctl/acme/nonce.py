"""Stateless, authenticated anti-replay nonces (RFC 8555 §6.5).

A nonce is ``base64url(expiry || random || mac)``:

* ``expiry``: 8 octets, unix seconds, big-endian;
* ``random``: 16 octets from the CSPRNG (uniqueness);
* ``mac``: BLAKE2b-128 keyed with the nonce key (RFC 7693 §2.5, BLAKE2's own MAC
  mode) over ``expiry || random``.

A nonce is minted for every ACME response, and the directory and newNonce answers are
little else: keyed BLAKE2b is one call into hashlib, where an HMAC built per nonce (even
copied from a keyed one) was several Python calls and a quarter of a newNonce answer's
instructions in the server process.

This module only mints nonces and checks that one is ours and not expired, so that
garbage is refused before touching the database. Single use (RFC 8555 §6.5: "MUST NOT
accept a nonce more than once") is enforced by the caller's store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from certctl.acme.b64 import b64url_decode, b64url_encode
from certctl.domain.errors import AcmeError, ProblemType

_EXPIRY_LEN: Final = 8
_RANDOM_LEN: Final = 16
_MAC_LEN: Final = 16
_SIGNED_LEN: Final = _EXPIRY_LEN + _RANDOM_LEN
NONCE_BYTES: Final = _SIGNED_LEN + _MAC_LEN  # 40
NONCE_CHARS: Final = 54  # len(b64url_encode(40 octets)), no padding
MIN_KEY_BYTES: Final = 16
MAX_KEY_BYTES: Final = 64  # BLAKE2b's key limit (RFC 7693 §2.1)
# Random octets are drawn from the kernel this many nonces at a time: one getrandom(2)
# per nonce was a tenth of the CPU of a newNonce answer. Each octet is used once.
_POOL_NONCES: Final = 256


class NonceCodec:
    """Mints and authenticates nonces; cheap enough to run on every response."""

    def __init__(self, key: bytes, ttl: timedelta, clock: Callable[[], datetime]) -> None:
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(f"nonce key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
        if ttl <= timedelta(0):
            raise ValueError("nonce ttl must be positive")
        self._key = bytes(key)
        self._ttl = ttl
        self._ttl_s = ttl.total_seconds()
        self._clock = clock
        self._pool = b""
        self._pool_at = 0
        self._pool_lock = threading.Lock()  # nonces are minted on the loop and in threads

    def issue(self) -> str:
        """A fresh nonce valid for ``ttl`` from now (rounded down to whole seconds)."""
        # The random pool spelled out here rather than in a helper: this runs for every
        # ACME answer.
        expiry = int(_aware(self._clock()).timestamp() + self._ttl_s)
        with self._pool_lock:
            at = self._pool_at
            if at >= len(self._pool):
                self._pool = os.urandom(_RANDOM_LEN * _POOL_NONCES)
                at = 0
            self._pool_at = at + _RANDOM_LEN
            random = self._pool[at : at + _RANDOM_LEN]
        signed = expiry.to_bytes(_EXPIRY_LEN, "big") + random
        return b64url_encode(signed + self._mac(signed))

    def check(self, nonce: str) -> datetime:
        """Return the expiry of an authentic, unexpired nonce or raise ``badNonce``."""
        value: object = nonce
        if not isinstance(value, str) or len(value) != NONCE_CHARS:
            raise _bad_nonce()
        try:
            raw = b64url_decode(value)
        except AcmeError:
            raise _bad_nonce() from None
        signed, mac = raw[:_SIGNED_LEN], raw[_SIGNED_LEN:]
        if not hmac.compare_digest(mac, self._mac(signed)):
            raise _bad_nonce()
        try:
            expiry = datetime.fromtimestamp(int.from_bytes(signed[:_EXPIRY_LEN], "big"), UTC)
        except (OverflowError, OSError, ValueError):  # only reachable with a leaked key
            raise _bad_nonce() from None
        if _aware(self._clock()) >= expiry:
            raise _bad_nonce()
        return expiry

    def _mac(self, signed: bytes) -> bytes:
        return hashlib.blake2b(signed, key=self._key, digest_size=_MAC_LEN).digest()


def _aware(moment: datetime) -> datetime:
    """Treat a naive clock reading as UTC rather than local time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bad_nonce() -> AcmeError:
    # One detail for every failure: do not tell an attacker which check failed.
    return AcmeError(ProblemType.BAD_NONCE, "JWS has an invalid anti-replay nonce")
