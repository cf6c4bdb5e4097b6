"""Public JWK parsing, key policy, RFC 7638 thumbprints, SPKI hashes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from josepy.jwk import JWKEC, JWKRSA

from certctl.acme.jwk import PublicJWK, spki_sha256
from certctl.domain.errors import AcmeError, ProblemType
from tests.unit.acme.jose_helpers import PrivateKey, b64u, jwk_of, uint_b64u

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
    "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
    "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _all_keys(rsa_key: rsa.RSAPrivateKey) -> list[PrivateKey]:
    return [
        rsa_key,
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ]


def _rejects(obj: object, problem: ProblemType) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        PublicJWK.from_dict(obj)
    assert info.value.type is problem, info.value
    return info.value


# --- happy paths ------------------------------------------------------------------------


def test_rfc7638_example_thumbprint() -> None:
    # The RFC's example also carries "alg" and "kid": they are not part of the thumbprint.
    jwk = PublicJWK.from_dict(
        {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    )
    assert jwk.thumbprint == RFC7638_THUMBPRINT
    assert jwk.kty == "RSA"
    assert jwk.to_dict() == {"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}


def test_round_trip_and_thumbprints_match_josepy(rsa_key: rsa.RSAPrivateKey) -> None:
    for key in _all_keys(rsa_key):
        from_key = PublicJWK.from_public_key(key.public_key())
        from_dict = PublicJWK.from_dict(jwk_of(key))
        assert from_key == from_dict
        assert hash(from_key) == hash(from_dict)
        assert from_key.to_dict() == jwk_of(key)
        assert PublicJWK.from_dict(from_key.to_dict()).thumbprint == from_key.thumbprint
        assert from_key.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if isinstance(key, rsa.RSAPrivateKey):
            theirs: Any = JWKRSA(key=key.public_key())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            theirs = JWKEC(key=key.public_key())
        else:
            continue  # josepy has no OKP keys
        assert from_key.thumbprint == b64u(theirs.thumbprint())


def test_ed25519_rfc8037_example() -> None:
    # RFC 8037 Appendix A.2 public key and A.3 thumbprint.
    jwk = PublicJWK.from_dict(
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    )
    assert jwk.thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_different_keys_differ(rsa_key: rsa.RSAPrivateKey) -> None:
    thumbprints = {PublicJWK.from_public_key(k.public_key()).thumbprint for k in _all_keys(rsa_key)}
    assert len(thumbprints) == 5


def test_unknown_public_members_are_ignored() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    obj = {**jwk_of(key), "use": "sig", "kid": "x", "key_ops": ["verify"]}
    assert PublicJWK.from_dict(obj).to_dict() == jwk_of(key)


def test_spki_sha256(rsa_key: rsa.RSAPrivateKey) -> None:
    for key in _all_keys(rsa_key):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert spki_sha256(key.public_key()) == hashlib.sha256(der).hexdigest()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert spki_sha256(other) != spki_sha256(rsa_key.public_key())


def test_rsa_size_limits_accepted() -> None:
    big = rsa.generate_private_key(65537, 4096)
    assert PublicJWK.from_public_key(big.public_key()).kty == "RSA"


# --- key policy: badPublicKey -------------------------------------------------------------


def test_rsa_1024_rejected() -> None:
    small = rsa.generate_private_key(65537, 1024)  # noqa: S505
    error = _rejects(jwk_of(small), ProblemType.BAD_PUBLIC_KEY)
    assert "2048" in error.detail
    with pytest.raises(AcmeError) as info:
        PublicJWK.from_public_key(small.public_key())
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY


def test_rsa_too_large_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    n = (1 << 8200) | 1
    _rejects({"kty": "RSA", "n": uint_b64u(n), "e": "AQAB"}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("exponent", [3, 17, 65539, 1, (1 << 64) + 1])
def test_rsa_exponent_other_than_65537_rejected(rsa_key: rsa.RSAPrivateKey, exponent: int) -> None:
    obj = {**jwk_of(rsa_key), "e": uint_b64u(exponent)}
    _rejects(obj, ProblemType.BAD_PUBLIC_KEY)


def test_rsa_even_modulus_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    n = rsa_key.public_key().public_numbers().n ^ 1
    _rejects({"kty": "RSA", "n": uint_b64u(n), "e": "AQAB"}, ProblemType.BAD_PUBLIC_KEY)


def test_off_curve_point_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_numbers()
    obj = {**jwk_of(key), "y": b64u(((point.y + 1) % (1 << 256)).to_bytes(32, "big"))}
    error = _rejects(obj, ProblemType.BAD_PUBLIC_KEY)
    assert "curve" in error.detail


def test_zero_point_rejected() -> None:
    zero = b64u(bytes(32))
    _rejects({"kty": "EC", "crv": "P-256", "x": zero, "y": zero}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("crv", ["P-192", "P-224", "secp256k1", "brainpoolP256r1", "p-256", ""])
def test_unsupported_curve_names_rejected(crv: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _rejects({**jwk_of(key), "crv": crv}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("curve", [ec.SECP192R1(), ec.SECP256K1(), ec.SECP224R1()])
def test_unsupported_curve_keys_rejected(curve: ec.EllipticCurve) -> None:
    try:
        key = ec.generate_private_key(curve)
    except Exception:  # some OpenSSL builds lack a curve
        pytest.skip(f"{curve.name} not available")
    _rejects(jwk_of(key), ProblemType.BAD_PUBLIC_KEY)
    with pytest.raises(AcmeError) as info:
        PublicJWK.from_public_key(key.public_key())
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY


def test_secp256k1_coordinates_labelled_p256_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    _rejects({**jwk_of(key), "crv": "P-256"}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("member", ["x", "y"])
def test_short_ec_coordinate_rejected(member: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    obj = {**jwk_of(key), member: b64u(bytes(46) + b"\x01")}
    error = _rejects(obj, ProblemType.BAD_PUBLIC_KEY)
    assert "48" in error.detail


def test_p384_coordinates_labelled_p256_rejected() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    _rejects({**jwk_of(key), "crv": "P-256"}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("crv", ["X25519", "Ed448", "X448", "ed25519"])
def test_unsupported_okp_curves_rejected(crv: str) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _rejects({**jwk_of(key), "crv": crv}, ProblemType.BAD_PUBLIC_KEY)


def test_non_signing_okp_keys_rejected() -> None:
    for pub in (x25519.X25519PrivateKey.generate(), ed448.Ed448PrivateKey.generate()):
        with pytest.raises(AcmeError) as info:
            PublicJWK.from_public_key(pub.public_key())
        assert info.value.type is ProblemType.BAD_PUBLIC_KEY


def test_short_ed25519_key_rejected() -> None:
    _rejects({"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes(31))}, ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("kty", ["oct", "DSA", "rsa", "ec", ""])
def test_unsupported_kty_rejected(kty: str) -> None:
    _rejects({"kty": kty, "n": RFC7638_N, "e": "AQAB"}, ProblemType.BAD_PUBLIC_KEY)


# --- structure: malformed -------------------------------------------------------------------


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k", "oth"])
def test_private_members_rejected(member: str) -> None:
    obj = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", member: "AQAB"}
    error = _rejects(obj, ProblemType.MALFORMED)
    assert "private" in error.detail


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_josepy_private_jwks_rejected(rsa_key: rsa.RSAPrivateKey, kind: str) -> None:
    private: Any = (
        JWKRSA(key=rsa_key) if kind == "rsa" else JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    )
    _rejects(private.to_json(), ProblemType.MALFORMED)


def test_ed25519_private_member_rejected() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _rejects({**jwk_of(key), "d": b64u(bytes(32))}, ProblemType.MALFORMED)


def test_oct_key_rejected_as_private() -> None:
    _rejects({"kty": "oct", "k": "c2VjcmV0"}, ProblemType.MALFORMED)


@pytest.mark.parametrize("obj", [None, "jwk", 1, [], [["kty", "EC"]], {1: "x"}])
def test_non_object_rejected(obj: object) -> None:
    _rejects(obj, ProblemType.MALFORMED)


@pytest.mark.parametrize("kty", [None, 1, ["RSA"]])
def test_kty_missing_or_not_a_string(kty: object) -> None:
    obj: dict[str, object] = {"n": RFC7638_N, "e": "AQAB"}
    if kty is not None:
        obj["kty"] = kty
    _rejects(obj, ProblemType.MALFORMED)


@pytest.mark.parametrize(
    ("member", "value"),
    [("n", None), ("n", 12345), ("e", 65537), ("e", "AQAB=="), ("n", RFC7638_N + "="), ("e", "")],
)
def test_bad_rsa_members(member: str, value: object) -> None:
    obj: dict[str, object] = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}
    if value is None:
        del obj[member]
    else:
        obj[member] = value
    _rejects(obj, ProblemType.MALFORMED)


def test_rsa_modulus_with_leading_zero_octet_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    n = rsa_key.public_key().public_numbers().n
    obj = {"kty": "RSA", "n": b64u(b"\x00" + n.to_bytes(256, "big")), "e": "AQAB"}
    _rejects(obj, ProblemType.MALFORMED)


def test_padded_standard_base64_coordinate_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    obj = jwk_of(key)
    obj["x"] = obj["x"].replace("-", "+").replace("_", "/") + "="
    _rejects(obj, ProblemType.MALFORMED)


@pytest.mark.parametrize("missing", ["crv", "x", "y"])
def test_ec_missing_members(missing: str) -> None:
    obj = jwk_of(ec.generate_private_key(ec.SECP256R1()))
    del obj[missing]
    _rejects(obj, ProblemType.MALFORMED)


def test_rsa_modulus_with_small_factor_rejected() -> None:
    n = 751 * ((1 << 2038) | 1)
    assert 2048 <= n.bit_length() <= 8192
    error = _rejects({"kty": "RSA", "n": uint_b64u(n), "e": "AQAB"}, ProblemType.BAD_PUBLIC_KEY)
    assert "small prime" in error.detail
