"""Ed25519 account keys of small order are badPublicKey.

A hostile probe registered the identity point as an account key: the signature R = the
identity, S = 0 verifies for every message under it, so anyone could act for the account.

The points are derived here independently of certctl.acme.jwk (which solves for their y
coordinates): a random curve point times the prime group order L lands in the 8-torsion
subgroup, and its multiples are that subgroup. Then every 32-octet string that RFC 8032
§5.1.3 would decode to one of them, or that differs only in an encoding slip (y + p, the
sign bit on x = 0), is tried.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from certctl.acme.jwk import PublicJWK
from certctl.acme.jws import parse_jws
from certctl.domain.errors import AcmeError, ProblemType
from tests.unit.acme.jose_helpers import NONCE, URL, b64u, body

# RFC 8032 §5.1: the field, the curve constant d and the prime order of the base point.
P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
L = 2**252 + 27742317777372353535851937790883648493
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)

Point = tuple[int, int]


def _decode(data: bytes) -> Point | None:
    """RFC 8032 §5.1.3, strict: None for y >= p, no such x, or the sign bit on x = 0."""
    value = int.from_bytes(data, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x + u) % P == 0:
        x = x * SQRT_M1 % P
    if (v * x * x - u) % P or (x == 0 and sign):
        return None
    return (P - x if x % 2 != sign else x), y


def _add(a: Point, b: Point) -> Point:
    """RFC 8032 §5.1.4, affine: the complete twisted Edwards addition law (a = -1)."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def _times(k: int, point: Point) -> Point:
    result = IDENTITY
    for bit in bin(k)[2:]:
        result = _add(result, result)
        if bit == "1":
            result = _add(result, point)
    return result


def _torsion() -> list[Point]:
    """The 8 points of order dividing 8, as the multiples of one of order 8."""
    for y in range(2, 1000):
        point = _decode(y.to_bytes(32, "little"))
        if point is None:
            continue
        generator = _times(L, point)  # [L]P kills the prime-order part of P
        if _times(4, generator) != IDENTITY:
            points = [_times(i, generator) for i in range(8)]
            assert len(set(points)) == 8
            return points
    raise AssertionError("no point of order 8 found")


TORSION = _torsion()


def _encodings(point: Point) -> set[bytes]:
    """Every 32-octet string whose y is ``point``'s y mod p, either sign bit."""
    y = point[1]
    ys = [y, y + P] if y + P < 1 << 255 else [y]
    return {(yy | sign << 255).to_bytes(32, "little") for yy in ys for sign in (0, 1)}


CANONICAL = {(y | (x & 1) << 255).to_bytes(32, "little") for x, y in TORSION}
ALL_ENCODINGS = set().union(*(_encodings(t) for t in TORSION))


def test_the_derivation() -> None:
    assert IDENTITY in TORSION
    assert all(_times(8, t) == IDENTITY for t in TORSION)
    assert all(_decode(e) in TORSION for e in CANONICAL)
    # 8 canonical encodings; 6 more: y + p for y = 0 and 1 with either sign bit, and the
    # sign bit on the two points with x = 0.
    assert (len(CANONICAL), len(ALL_ENCODINGS)) == (8, 14)
    assert b"\x01" + b"\x00" * 31 in CANONICAL


def test_the_identity_key_verifies_a_forged_signature_in_the_bare_library() -> None:
    # Why the JWK parser must refuse it: R = identity, S = 0 passes for any message.
    identity = b"\x01" + b"\x00" * 31
    key = ed25519.Ed25519PublicKey.from_public_bytes(identity)
    key.verify(identity + b"\x00" * 32, b"anything at all")


@pytest.mark.parametrize("encoded", sorted(ALL_ENCODINGS), ids=bytes.hex)
def test_small_order_keys_are_bad_public_keys(encoded: bytes) -> None:
    with pytest.raises(AcmeError) as info:
        PublicJWK.from_dict({"kty": "OKP", "crv": "Ed25519", "x": b64u(encoded)})
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY, info.value


def test_a_forged_request_with_the_identity_key_is_refused() -> None:
    identity = b"\x01" + b"\x00" * 31
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(identity)}
    header = {"alg": "EdDSA", "jwk": jwk, "nonce": NONCE, "url": URL}
    protected, payload = b64u(body(header)), b64u(b"{}")
    signature = b64u(identity + b"\x00" * 32)
    with pytest.raises(AcmeError) as info:
        parse_jws(body({"protected": protected, "payload": payload, "signature": signature}))
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY


def test_ordinary_keys_and_neighbours_of_small_order_points_are_accepted() -> None:
    for _ in range(20):
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        assert PublicJWK.from_public_key(key).kty == "OKP"
    # Curve points with a small y that is not one of the eight.
    for y in range(2, 30):
        point = _decode(y.to_bytes(32, "little"))
        if point is not None:
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(y.to_bytes(32, "little"))}
            assert PublicJWK.from_dict(jwk).kty == "OKP"
