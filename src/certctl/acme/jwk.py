"""Public JSON Web Keys (RFC 7517) for ACME account keys, with our key policy.

Only public keys of three families are accepted (RFC 7518 §6.2/§6.3, RFC 8037 §2):

* RSA: modulus 2048..8192 bits, public exponent exactly 65537;
* EC: P-256, P-384, P-521, point on the curve;
* OKP: Ed25519, not a point of small order.

Structural problems are ``malformed``; keys that parse but fail the policy are
``badPublicKey`` (RFC 8555 §6.7).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from certctl.acme.b64 import b64url_decode, b64url_encode
from certctl.domain.ed25519 import ed25519_small_order
from certctl.domain.errors import AcmeError, ProblemType

AccountPublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
)

RSA_MIN_BITS: Final = 2048
RSA_MAX_BITS: Final = 8192
RSA_EXPONENT: Final = 65537

# JWK "crv" name -> (curve, coordinate length in octets) (RFC 7518 §6.2.1.1-§6.2.1.3).
_EC_CURVES: Final[dict[str, tuple[ec.EllipticCurve, int]]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
_EC_CURVE_NAMES: Final[dict[str, str]] = {curve.name: crv for crv, (curve, _) in _EC_CURVES.items()}
_ED25519_KEY_LEN: Final = 32


def _small_primes_product(limit: int) -> int:
    """The product of all primes below ``limit`` (sieve of Eratosthenes)."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return math.prod(i for i in range(limit) if sieve[i])


# CA/B Forum BR §6.1.6: an RSA modulus should be odd and have no factors smaller than 752.
# Checking against the product of those primes takes a single gcd.
_SMALL_PRIMES_PRODUCT: Final = _small_primes_product(752)

# Private-key members of RSA (RFC 7518 §6.3.2), EC/OKP (§6.2.2, RFC 8037 §2) and
# symmetric keys (§6.4.1). A client must never send them; refuse rather than ignore.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class PublicJWK:
    """A policy-checked public account key and its RFC 7638 thumbprint.

    Equality and hashing use ``kty`` and the thumbprint, which identify the key uniquely.
    """

    key: AccountPublicKey = field(compare=False, repr=False)
    kty: str
    thumbprint: str

    @classmethod
    def from_dict(cls, obj: object) -> PublicJWK:
        """Strictly parse a JWK JSON object that must describe an acceptable public key."""
        if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
            raise _malformed("JWK must be a JSON object")
        private = _PRIVATE_MEMBERS.intersection(obj)
        if private:
            raise _malformed("JWK must not contain private key members")
        kty = obj.get("kty")
        if not isinstance(kty, str):
            raise _malformed('JWK "kty" must be a string')
        key = _PARSERS.get(kty, _unsupported_kty)(obj)
        return cls._build(key)

    @classmethod
    def from_public_key(cls, key: PublicKeyTypes) -> PublicJWK:
        """Wrap a ``cryptography`` public key, applying the same key policy as ``from_dict``."""
        return cls.from_dict(_members(key))

    @classmethod
    def _build(cls, key: AccountPublicKey) -> PublicJWK:
        members = _members(key)
        return cls(key=key, kty=members["kty"], thumbprint=_thumbprint(members))

    def to_dict(self) -> dict[str, str]:
        """The public JWK members (exactly the RFC 7638 required members)."""
        return _members(self.key)


def spki_sha256(key: PublicKeyTypes) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# --- parsing ---------------------------------------------------------------------------


def _parse_rsa(obj: Mapping[str, object]) -> AccountPublicKey:
    n = _uint_member(obj, "n")
    e = _uint_member(obj, "e")
    if e != RSA_EXPONENT:
        raise _bad_key("RSA public exponent must be 65537")
    if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS:
        raise _bad_key(f"RSA modulus must be {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
    if math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise _bad_key("RSA modulus has a small prime factor")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise _bad_key("invalid RSA public key") from exc


def _parse_ec(obj: Mapping[str, object]) -> AccountPublicKey:
    crv = _str_member(obj, "crv")
    if crv not in _EC_CURVES:
        raise _bad_key("EC curve must be one of " + ", ".join(_EC_CURVES))
    curve, size = _EC_CURVES[crv]
    x = _octets_member(obj, "x")
    y = _octets_member(obj, "y")
    # RFC 7518 §6.2.1.2/§6.2.1.3: coordinates are the full field size, never shortened.
    if len(x) != size or len(y) != size:
        raise _bad_key(f"EC coordinates for {crv} must be {size} octets")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
    )
    try:
        # cryptography refuses points off the curve (invalid-curve attacks) with ValueError.
        return numbers.public_key()
    except ValueError as exc:
        raise _bad_key("EC point is not on the curve") from exc


def _parse_okp(obj: Mapping[str, object]) -> AccountPublicKey:
    crv = _str_member(obj, "crv")
    if crv != "Ed25519":  # RFC 8037 §2; X25519 cannot sign and Ed448 is not offered.
        raise _bad_key("OKP curve must be Ed25519")
    x = _octets_member(obj, "x")
    if len(x) != _ED25519_KEY_LEN:
        raise _bad_key("Ed25519 public key must be 32 octets")
    if ed25519_small_order(x):
        raise _bad_key("Ed25519 public key is a point of small order")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    except ValueError as exc:
        raise _bad_key("invalid Ed25519 public key") from exc


def _unsupported_kty(obj: Mapping[str, object]) -> AccountPublicKey:
    raise _bad_key('JWK "kty" must be one of RSA, EC, OKP')


_PARSERS: Final = {"RSA": _parse_rsa, "EC": _parse_ec, "OKP": _parse_okp}


def _str_member(obj: Mapping[str, object], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _malformed(f'JWK member "{name}" must be a string')
    return value


def _octets_member(obj: Mapping[str, object], name: str) -> bytes:
    return b64url_decode(_str_member(obj, name))


def _uint_member(obj: Mapping[str, object], name: str) -> int:
    """A Base64urlUInt (RFC 7518 §2): non-empty, minimal octets, no leading zero octet."""
    raw = _octets_member(obj, name)
    if not raw or (len(raw) > 1 and raw[0] == 0):
        raise _malformed(f'JWK member "{name}" is not a minimal Base64urlUInt')
    return int.from_bytes(raw, "big")


# --- serialisation ---------------------------------------------------------------------


def _members(key: PublicKeyTypes) -> dict[str, str]:
    """The RFC 7638 §3.2 required members of ``key``, canonically encoded."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint_b64(numbers.n), "e": _uint_b64(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _EC_CURVE_NAMES.get(key.curve.name)
        if crv is None:
            raise _bad_key("EC curve must be one of " + ", ".join(_EC_CURVES))
        size = _EC_CURVES[crv][1]
        point = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(point.x.to_bytes(size, "big")),
            "y": b64url_encode(point.y.to_bytes(size, "big")),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    raise _bad_key("unsupported public key type")


def _uint_b64(value: int) -> str:
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _thumbprint(members: Mapping[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over required members, sorted, no whitespace."""
    canonical = json.dumps(dict(members), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _malformed(detail: str) -> AcmeError:
    return AcmeError(ProblemType.MALFORMED, detail)


def _bad_key(detail: str) -> AcmeError:
    return AcmeError(ProblemType.BAD_PUBLIC_KEY, detail)
