"""Random octets for identifiers, tokens and serials, from the kernel's CSPRNG in blocks.

An issuance draws random octets a dozen times (object ids, audit ids, the serial), and a
``getrandom(2)`` call for each cost more than the use of the octets. They are read
``_BLOCK`` at a time instead and each octet is handed out once: the same CSPRNG output,
fewer system calls. Forked workers start with an empty block of their own (a block read
before a fork would otherwise be handed out twice).
"""

from __future__ import annotations

import base64
import os
import threading

_BLOCK = 4096


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if n > _BLOCK:
            return os.urandom(n)
        with self._lock:
            at = self._at
            if at + n > len(self._block):
                self._block, at = os.urandom(_BLOCK), 0
            self._at = at + n
            return self._block[at : at + n]

    def reset(self) -> None:
        self._block, self._at = b"", 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.reset)


def token_bytes(n: int) -> bytes:
    """``n`` random octets (as ``secrets.token_bytes``)."""
    return _pool.take(n)


def token_hex(n: int) -> str:
    """``n`` random octets in hex (as ``secrets.token_hex``)."""
    return _pool.take(n).hex()


def token_urlsafe(n: int) -> str:
    """``n`` random octets in unpadded base64url (as ``secrets.token_urlsafe``)."""
    return base64.urlsafe_b64encode(_pool.take(n)).rstrip(b"=").decode("ascii")
