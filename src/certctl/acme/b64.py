"""Strict base64url (RFC 4648 §5) without padding, as JOSE uses it (RFC 7515 §2).

Decoding is deliberately strict: JWS members are compared, hashed and stored, so every
accepted string must have exactly one byte sequence *and* exactly one spelling. We refuse
padding, the standard alphabet's ``+`` and ``/``, whitespace, impossible lengths and
non-canonical trailing bits (RFC 4648 §3.5: "canonical encoding").
"""

from __future__ import annotations

import base64
import binascii
import re

from certctl.domain.errors import AcmeError, ProblemType

# RFC 4648 §5 "URL and Filename safe" alphabet only; fullmatch() anchors both ends.
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """Base64url-encode ``data`` without trailing ``=`` (RFC 7515 §2)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode strict, unpadded, canonical base64url or raise ``malformed``."""
    value: object = text  # callers pass JSON values: stay typed even if they slip
    if not isinstance(value, str):
        raise _bad("base64url value must be a string")
    if _ALPHABET.fullmatch(text) is None:
        raise _bad("invalid base64url: only A-Z a-z 0-9 - _ without padding are allowed")
    if len(text) % 4 == 1:
        # 6 bits cannot encode a whole octet (RFC 4648 §4).
        raise _bad("invalid base64url: impossible length")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - alphabet checked above
        raise _bad("invalid base64url") from exc
    # Non-zero unused trailing bits give a second spelling of the same bytes (RFC 4648 §3.5).
    if b64url_encode(data) != text:
        raise _bad("invalid base64url: non-canonical encoding")
    return data


def _bad(detail: str) -> AcmeError:
    return AcmeError(ProblemType.MALFORMED, detail)
