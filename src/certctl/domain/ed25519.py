"""Ed25519 public keys of small order (RFC 8032 §5.1), which anyone can sign for.

Pure arithmetic on the 32-octet encoding, shared by the JWK parser (account keys) and
the CA's check of a CSR's key: a self-signature proves nothing for such a key.
"""

from __future__ import annotations

from typing import Final

# edwards25519 (RFC 8032 §5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P: Final = 2**255 - 19
_D: Final = -121665 * pow(121666, -1, _P) % _P
_Y_MASK: Final = (1 << 255) - 1  # RFC 8032 §5.1.2: bit 255 is the sign of x


def _square_roots(a: int) -> tuple[int, ...]:
    """The square roots of ``a`` in GF(p), r and p - r, or none (as in RFC 8032 §5.1.3)."""
    p = _P
    root = pow(a, (p + 3) // 8, p)
    if (root * root - a) % p:
        root = root * pow(2, (p - 1) // 4, p) % p  # times a square root of -1
    return (root, p - root) if (root * root - a) % p == 0 else ()


def _small_order_ys() -> frozenset[int]:
    """The y coordinates of the 8 points of order dividing 8 (the curve's cofactor).

    (0, 1) has order 1, (0, -1) order 2, the two points with y = 0 order 4. A point of
    order 8 doubles to one of the latter: y(2P) = (y^2 + x^2) / (1 - d x^2 y^2) = 0, so
    x^2 = -y^2, and the curve equation turns into d y^4 + 2 y^2 - 1 = 0, whose roots are
    y^2 = (-1 +- sqrt(1 + d)) / d (one of the two is a square: two y, four points).
    """
    p, d = _P, _D
    ys = {0, 1, p - 1}
    for root in _square_roots(1 + d):
        ys.update(_square_roots((root - 1) * pow(d, -1, p)))
    return frozenset(ys)


# A public key A of small order lets anyone sign for it: with R the identity and S = 0,
# the check [S]B = R + [k]A holds whenever [k]A is the identity, for every message when A
# is the identity, for one in 8 when A has order 8. Matched on y mod p, so that the
# non-canonical encodings of these points (y + p; the sign bit on x = 0) are refused too.
_SMALL_ORDER_YS: Final = _small_order_ys()


def ed25519_small_order(encoded: bytes) -> bool:
    """Whether the 32-octet Ed25519 public key ``encoded`` is a point of small order, in
    any of its encodings."""
    y = int.from_bytes(encoded, "little") & _Y_MASK
    return y % _P in _SMALL_ORDER_YS
