"""Test-only JOSE helpers that build (possibly hostile) flattened JWS request bodies.

Deliberately independent of ``certctl.acme``: keys are encoded and requests signed with
the standard library and ``cryptography`` only, so that the tests do not check the code
against itself.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
URL = "https://ca.example/acme/new-order"
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"
KID = "https://ca.example/acme/acct/1"

_CURVE_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_CURVE_CRV = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ALG_HASH = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def uint_b64u(value: int) -> str:
    return b64u(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def jwk_of(key: PrivateKey) -> dict[str, str]:
    """The public JWK of ``key``, encoded by hand (RFC 7518 §6, RFC 8037 §2)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": uint_b64u(numbers.n), "e": uint_b64u(numbers.e)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        point = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": _CURVE_CRV.get(key.curve.name, key.curve.name),
            "x": b64u(point.x.to_bytes(size, "big")),
            "y": b64u(point.y.to_bytes(size, "big")),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}


def default_alg(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _CURVE_ALG[key.curve.name]
    return "EdDSA"


def raw_sign(key: PrivateKey, data: bytes, alg: object = None) -> bytes:
    """A JWS signature value (RFC 7518 §3.3, §3.4; RFC 8037 §3.1); any alg hashes with SHA-2."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(
            key.sign(data, ec.ECDSA(_ALG_HASH.get(str(alg), hashes.SHA256())))
        )
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(data)


def header(key: PrivateKey, *, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid protected header: jwk (or kid), nonce, url; ``extra`` overrides/adds."""
    base: dict[str, Any] = {"alg": default_alg(key), "nonce": NONCE, "url": URL}
    if kid is None:
        base["jwk"] = jwk_of(key)
    else:
        base["kid"] = kid
    base.update(extra)
    return base


def sign(
    key: PrivateKey,
    protected: dict[str, Any] | None = None,
    payload: bytes = b"{}",
    *,
    raw_protected: str | None = None,
    raw_payload: str | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A flattened JWS object; ``drop`` removes header members after defaults apply."""
    hdr = protected if protected is not None else header(key)
    for name in drop:
        hdr.pop(name, None)
    prot = b64u((raw_protected if raw_protected is not None else json.dumps(hdr)).encode())
    pay = raw_payload if raw_payload is not None else b64u(payload)
    sig = raw_sign(key, f"{prot}.{pay}".encode(), hdr.get("alg"))
    return {"protected": prot, "payload": pay, "signature": b64u(sig)}


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()
