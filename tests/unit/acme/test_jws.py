"""Flattened JWS parsing and verification (RFC 8555 §6.2, RFC 7515)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from acme import challenges
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from josepy import jws as jose_jws
from josepy.b64 import b64decode
from josepy.jwa import ES256, ES384, ES512, RS256
from josepy.jwk import JWKEC, JWKRSA

from certctl.acme.jwk import PublicJWK
from certctl.acme.jws import (
    ALLOWED_ALGS,
    MAX_JSON_DEPTH,
    ParsedJWS,
    key_authorization,
    parse_jws,
    verify_jws,
)
from certctl.domain.errors import AcmeError, ProblemType
from tests.unit.acme.jose_helpers import (
    KID,
    NONCE,
    URL,
    PrivateKey,
    b64u,
    body,
    header,
    jwk_of,
    raw_sign,
    sign,
)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def p521() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP521R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _public(key: PrivateKey) -> PublicJWK:
    return PublicJWK.from_public_key(key.public_key())


def _parse_fails(raw: bytes, problem: ProblemType, **kwargs: bool) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        parse_jws(raw, **kwargs)
    assert info.value.type is problem, info.value
    return info.value


def _verify_fails(jws: ParsedJWS, key: PublicJWK, problem: ProblemType) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        verify_jws(jws, key)
    assert info.value.type is problem, info.value
    return info.value


# --- happy paths --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rsa_key", "p256", "p384", "p521", "ed_key"])
def test_sign_with_jwk_and_verify(which: str, request: pytest.FixtureRequest) -> None:
    key: PrivateKey = request.getfixturevalue(which)
    payload = b'{"termsOfServiceAgreed": true, "contact": ["mailto:a@example.org"]}'
    jws = parse_jws(body(sign(key, payload=payload)))
    assert jws.jwk == _public(key)
    assert jws.kid is None
    assert jws.url == URL
    assert jws.nonce == NONCE
    assert jws.alg in ALLOWED_ALGS
    assert jws.payload == payload
    assert jws.payload_json() == {
        "termsOfServiceAgreed": True,
        "contact": ["mailto:a@example.org"],
    }
    assert not jws.is_post_as_get
    verify_jws(jws, _public(key))


@pytest.mark.parametrize("which", ["rsa_key", "p256", "p384", "p521", "ed_key"])
def test_sign_with_kid_and_verify_against_stored_key(
    which: str, request: pytest.FixtureRequest
) -> None:
    key: PrivateKey = request.getfixturevalue(which)
    jws = parse_jws(body(sign(key, header(key, kid=KID), payload=b"")))
    assert jws.kid == KID
    assert jws.jwk is None
    assert jws.is_post_as_get
    assert jws.payload == b""
    verify_jws(jws, _public(key))


def test_parsed_fields(p256: ec.EllipticCurvePrivateKey) -> None:
    obj = sign(p256, payload=b'{"a":1}')
    jws = parse_jws(body(obj))
    assert jws.signing_input == f"{obj['protected']}.{obj['payload']}".encode()
    assert jws.protected["url"] == URL
    assert jws.protected["alg"] == "ES256"
    with pytest.raises(TypeError):
        jws.protected["url"] = "https://evil.example/"  # type: ignore[index]


def test_unknown_header_parameters_and_typ_are_ignored(p256: ec.EllipticCurvePrivateKey) -> None:
    hdr = header(p256, typ="application/jose+json", x_custom={"a": 1})
    verify_jws(parse_jws(body(sign(p256, hdr))), _public(p256))


def test_nonce_optional_when_not_required(p256: ec.EllipticCurvePrivateKey) -> None:
    jws = parse_jws(body(sign(p256, drop=("nonce",))), require_nonce=False)
    assert jws.nonce is None
    verify_jws(jws, _public(p256))


def test_whitespace_around_members_is_fine(p256: ec.EllipticCurvePrivateKey) -> None:
    raw = json.dumps(sign(p256), indent=4).encode()
    verify_jws(parse_jws(b"\n " + raw + b"\n"), _public(p256))


def test_key_authorization(p256: ec.EllipticCurvePrivateKey) -> None:
    token = b64u(b"0123456789abcdef0123456789abcdef")
    ours = key_authorization(token, _public(p256))
    assert ours == f"{token}.{_public(p256).thumbprint}"
    challenge = challenges.HTTP01(token=b64decode(token))
    assert ours == challenge.key_authorization(JWKEC(key=p256.public_key()))


# --- interoperability with certbot's libraries -----------------------------------------------


def _josepy_key(key: PrivateKey) -> Any:
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    alg = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}
    return JWKEC(key=key), alg[key.curve.name]


@pytest.mark.parametrize("which", ["rsa_key", "p256", "p384", "p521"])
@pytest.mark.parametrize("kid", [None, KID])
@pytest.mark.parametrize("payload", [b"", b'{"identifiers": [{"type": "dns", "value": "a.b"}]}'])
def test_acme_client_jws_accepted(
    which: str, kid: str | None, payload: bytes, request: pytest.FixtureRequest
) -> None:
    """What acme.client.ClientV2._wrap_in_jws sends: acme.jws.JWS.sign(...).json_dumps()."""
    key: PrivateKey = request.getfixturevalue(which)
    jwk, alg = _josepy_key(key)
    nonce = b64decode(NONCE)
    signed = acme_jws.JWS.sign(payload, key=jwk, alg=alg, nonce=nonce, url=URL, kid=kid)
    jws = parse_jws(signed.json_dumps(indent=2).encode())
    assert (jws.kid, jws.url, jws.nonce, jws.payload) == (kid, URL, NONCE, payload)
    assert (jws.jwk is None) == (kid is not None)
    verify_jws(jws, _public(key))


def test_plain_josepy_jws_without_url_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    signed = jose_jws.JWS.sign(
        b'{"status": "deactivated"}',
        key=JWKEC(key=p256),
        alg=ES256,
        protect=frozenset(["alg", "jwk"]),
    )
    obj = signed.to_partial_json(flat=True)
    assert set(obj) == {"protected", "payload", "signature"}
    # josepy's base Header has no url/nonce: acme.jws.Header adds them; require neither here.
    with pytest.raises(AcmeError) as info:
        parse_jws(json.dumps(obj).encode(), require_nonce=False)
    assert info.value.type is ProblemType.MALFORMED
    assert "url" in info.value.detail


# --- serialization shape ----------------------------------------------------------------


def test_compact_serialization_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    obj = sign(p256)
    compact = f"{obj['protected']}.{obj['payload']}.{obj['signature']}".encode()
    error = _parse_fails(compact, ProblemType.MALFORMED)
    assert "flattened JSON serialization required" in error.detail
    _parse_fails(json.dumps(compact.decode()).encode(), ProblemType.MALFORMED)


def test_general_serialization_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    obj = sign(p256)
    general = {
        "payload": obj["payload"],
        "signatures": [{"protected": obj["protected"], "signature": obj["signature"]}],
    }
    error = _parse_fails(body(general), ProblemType.MALFORMED)
    assert "flattened JSON serialization required" in error.detail
    _parse_fails(body({**obj, "signatures": general["signatures"]}), ProblemType.MALFORMED)


def test_general_serialization_from_josepy_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    signed = acme_jws.JWS.sign(b"{}", key=JWKEC(key=p256), alg=ES256, nonce=b"n", url=URL)
    general = json.dumps(signed.to_partial_json(flat=False), default=lambda o: o.to_json())
    error = _parse_fails(general.encode(), ProblemType.MALFORMED)
    assert "general JSON serialization" in error.detail


def test_unprotected_header_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    obj = {**sign(p256), "header": {"kid": KID}}
    error = _parse_fails(body(obj), ProblemType.MALFORMED)
    assert "flattened JSON serialization required" in error.detail


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
def test_missing_member_rejected(p256: ec.EllipticCurvePrivateKey, member: str) -> None:
    obj = sign(p256)
    del obj[member]
    _parse_fails(body(obj), ProblemType.MALFORMED)


def test_extra_member_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    _parse_fails(body({**sign(p256), "extra": "x"}), ProblemType.MALFORMED)


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"1", b'"x"', b"{", b"\xff\xfe{}", b"{}"])
def test_body_not_an_object_rejected(raw: bytes) -> None:
    _parse_fails(raw, ProblemType.MALFORMED)


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
@pytest.mark.parametrize("value", [None, 1, True, [], {}])
def test_non_string_members_rejected(
    p256: ec.EllipticCurvePrivateKey, member: str, value: object
) -> None:
    _parse_fails(body({**sign(p256), member: value}), ProblemType.MALFORMED)


def test_duplicate_keys_in_body_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    obj = sign(p256)
    other = sign(p256, payload=b'{"other": 1}')
    raw = (
        f'{{"protected": "{obj["protected"]}", "payload": "{other["payload"]}", '
        f'"payload": "{obj["payload"]}", "signature": "{obj["signature"]}"}}'
    )
    error = _parse_fails(raw.encode(), ProblemType.MALFORMED)
    assert "duplicate" in error.detail


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
@pytest.mark.parametrize("mutate", ["pad", "plus", "space"])
def test_members_must_be_strict_base64url(
    p256: ec.EllipticCurvePrivateKey, member: str, mutate: str
) -> None:
    obj = sign(p256, payload=b'{"a":"~~~~~"}')
    value = obj[member]
    obj[member] = {"pad": value + "=", "plus": "+" + value[1:], "space": value + " "}[mutate]
    _parse_fails(body(obj), ProblemType.MALFORMED)


def test_empty_protected_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    _parse_fails(body({**sign(p256), "protected": ""}), ProblemType.MALFORMED)


# --- protected header -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["[]", '"alg"', "null", "1", "{", "ES256"])
def test_protected_not_an_object(p256: ec.EllipticCurvePrivateKey, raw: str) -> None:
    _parse_fails(body(sign(p256, raw_protected=raw)), ProblemType.MALFORMED)


def test_duplicate_keys_in_protected_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    hdr = json.dumps(header(p256))
    raw = hdr[:-1] + ', "url": "https://evil.example/"}'
    error = _parse_fails(body(sign(p256, raw_protected=raw)), ProblemType.MALFORMED)
    assert "duplicate" in error.detail


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512", "RS384", "RS512", "PS256"])
def test_disallowed_algs(p256: ec.EllipticCurvePrivateKey, alg: str) -> None:
    obj = sign(p256, header(p256, alg=alg))
    if alg.lower() == "none":
        obj["signature"] = ""
    error = _parse_fails(body(obj), ProblemType.BAD_SIGNATURE_ALGORITHM)
    assert "ES256" in error.detail
    assert "RS256" in error.detail


@pytest.mark.parametrize("alg", ["FOO", "", "es256", "ES256 ", None, 256, ["ES256"]])
def test_unknown_or_missing_alg(p256: ec.EllipticCurvePrivateKey, alg: object) -> None:
    hdr = header(p256, alg=alg)
    if alg is None:
        del hdr["alg"]
    _parse_fails(body(sign(p256, hdr)), ProblemType.BAD_SIGNATURE_ALGORITHM)


def test_hs256_with_public_key_as_secret_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """Classic alg confusion: HMAC keyed with the public key bytes."""
    import hashlib
    import hmac

    hdr = header(rsa_key, alg="HS256")
    prot = b64u(json.dumps(hdr).encode())
    pay = b64u(b"{}")
    secret = json.dumps(jwk_of(rsa_key)).encode()
    mac = hmac.new(secret, f"{prot}.{pay}".encode(), hashlib.sha256).digest()
    raw = body({"protected": prot, "payload": pay, "signature": b64u(mac)})
    _parse_fails(raw, ProblemType.BAD_SIGNATURE_ALGORITHM)


@pytest.mark.parametrize(
    ("signer", "alg"),
    [
        ("p384", "ES256"),
        ("p256", "ES384"),
        ("p256", "ES512"),
        ("p521", "ES384"),
        ("p256", "RS256"),
        ("rsa_key", "ES256"),
        ("rsa_key", "EdDSA"),
        ("ed_key", "ES256"),
        ("ed_key", "RS256"),
        ("p256", "EdDSA"),
    ],
)
def test_alg_inconsistent_with_embedded_jwk(
    signer: str, alg: str, request: pytest.FixtureRequest
) -> None:
    key: PrivateKey = request.getfixturevalue(signer)
    obj = sign(key, header(key, alg=alg))
    error = _parse_fails(body(obj), ProblemType.BAD_SIGNATURE_ALGORITHM)
    assert alg in error.detail


def test_alg_inconsistent_with_stored_key(
    p256: ec.EllipticCurvePrivateKey, p384: ec.EllipticCurvePrivateKey
) -> None:
    jws = parse_jws(body(sign(p256, header(p256, kid=KID))))
    _verify_fails(jws, _public(p384), ProblemType.BAD_SIGNATURE_ALGORITHM)


def test_b64_header_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    for value in (False, True):
        hdr = header(p256, b64=value)
        error = _parse_fails(body(sign(p256, hdr)), ProblemType.MALFORMED)
        assert "b64" in error.detail


@pytest.mark.parametrize("crit", [["exp"], [], ["b64"], "exp", None])
def test_crit_header_rejected(p256: ec.EllipticCurvePrivateKey, crit: object) -> None:
    hdr = header(p256, crit=crit, exp=1)
    error = _parse_fails(body(sign(p256, hdr)), ProblemType.MALFORMED)
    assert "crit" in error.detail


def test_both_jwk_and_kid_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    hdr = header(p256, kid=KID, jwk=jwk_of(p256))
    error = _parse_fails(body(sign(p256, hdr)), ProblemType.MALFORMED)
    assert "exactly one" in error.detail


def test_neither_jwk_nor_kid_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    error = _parse_fails(body(sign(p256, drop=("jwk",))), ProblemType.MALFORMED)
    assert "exactly one" in error.detail


@pytest.mark.parametrize("kid", ["", None, 1, {"kid": KID}])
def test_bad_kid_rejected(p256: ec.EllipticCurvePrivateKey, kid: object) -> None:
    hdr = header(p256, kid="placeholder")
    hdr["kid"] = kid
    _parse_fails(body(sign(p256, hdr)), ProblemType.MALFORMED)


@pytest.mark.parametrize("jwk", [None, "key", [], {}])
def test_bad_jwk_rejected(p256: ec.EllipticCurvePrivateKey, jwk: object) -> None:
    _parse_fails(body(sign(p256, header(p256, jwk=jwk))), ProblemType.MALFORMED)


def test_private_jwk_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    secret = p256.private_numbers().private_value.to_bytes(32, "big")
    hdr = header(p256, jwk={**jwk_of(p256), "d": b64u(secret)})
    _parse_fails(body(sign(p256, hdr)), ProblemType.MALFORMED)


def test_weak_embedded_key_rejected() -> None:
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505
    _parse_fails(body(sign(weak)), ProblemType.BAD_PUBLIC_KEY)


def test_missing_url_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    error = _parse_fails(body(sign(p256, drop=("url",))), ProblemType.MALFORMED)
    assert "url" in error.detail


@pytest.mark.parametrize("url", ["", 1, None, ["https://ca.example/"]])
def test_bad_url_rejected(p256: ec.EllipticCurvePrivateKey, url: object) -> None:
    _parse_fails(body(sign(p256, header(p256, url=url))), ProblemType.MALFORMED)


def test_missing_nonce_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    _parse_fails(body(sign(p256, drop=("nonce",))), ProblemType.BAD_NONCE)


@pytest.mark.parametrize("nonce", [1, None, ["x"], "not base64!", "AAAA=", "AB"])
def test_badly_encoded_nonce_rejected(p256: ec.EllipticCurvePrivateKey, nonce: object) -> None:
    # RFC 8555 §6.5.2: a nonce that is not base64url is malformed, required or not.
    raw = body(sign(p256, header(p256, nonce=nonce)))
    _parse_fails(raw, ProblemType.MALFORMED)
    _parse_fails(raw, ProblemType.MALFORMED, require_nonce=False)


# --- signatures -----------------------------------------------------------------------------


def test_signature_by_other_key_with_embedded_jwk(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    """The attacker signs with their own key and embeds their jwk: the caller verifies
    against the stored account key, never the embedded one."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    jws = parse_jws(body(sign(attacker)))
    assert jws.jwk == _public(attacker)
    error = _verify_fails(jws, _public(p256), ProblemType.UNAUTHORIZED)
    assert error.detail == "JWS signature verification failed"


def test_signature_by_other_key_with_kid(p256: ec.EllipticCurvePrivateKey) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    jws = parse_jws(body(sign(attacker, header(attacker, kid=KID))))
    _verify_fails(jws, _public(p256), ProblemType.UNAUTHORIZED)


def test_embedded_jwk_not_the_signer(p256: ec.EllipticCurvePrivateKey) -> None:
    victim = ec.generate_private_key(ec.SECP256R1())
    jws = parse_jws(body(sign(p256, header(victim))))
    assert jws.jwk is not None
    _verify_fails(jws, jws.jwk, ProblemType.UNAUTHORIZED)


@pytest.mark.parametrize("which", ["rsa_key", "p256", "p384", "ed_key"])
def test_tampered_payload_rejected(which: str, request: pytest.FixtureRequest) -> None:
    key: PrivateKey = request.getfixturevalue(which)
    obj = sign(key, payload=b'{"status": "valid"}')
    obj["payload"] = b64u(b'{"status": "deactivated"}')
    _verify_fails(parse_jws(body(obj)), _public(key), ProblemType.UNAUTHORIZED)


def test_tampered_protected_header_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    good = sign(p256)
    forged = sign(p256, header(p256, url="https://ca.example/acme/revoke-cert"))
    obj = {**forged, "signature": good["signature"]}
    _verify_fails(parse_jws(body(obj)), _public(p256), ProblemType.UNAUTHORIZED)


@pytest.mark.parametrize("which", ["p256", "p384", "p521", "ed_key"])
def test_truncated_fixed_size_signature_rejected(
    which: str, request: pytest.FixtureRequest
) -> None:
    key: PrivateKey = request.getfixturevalue(which)
    obj = sign(key)
    raw = raw_sign(key, f"{obj['protected']}.{obj['payload']}".encode(), header(key)["alg"])
    for bad in (raw[:-1], raw[:32], raw + b"\x00", b""):
        error = _parse_fails(body({**obj, "signature": b64u(bad)}), ProblemType.MALFORMED)
        assert "signature" in error.detail


def test_truncated_rsa_signature_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    obj = sign(rsa_key)
    raw = raw_sign(rsa_key, f"{obj['protected']}.{obj['payload']}".encode())
    for bad in (raw[:-1], raw[1:], b"\x00" + raw, raw[:1]):
        jws = parse_jws(body({**obj, "signature": b64u(bad)}))
        _verify_fails(jws, _public(rsa_key), ProblemType.UNAUTHORIZED)


def test_der_ecdsa_signature_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import hashes

    obj = sign(p256)
    der = p256.sign(f"{obj['protected']}.{obj['payload']}".encode(), ec.ECDSA(hashes.SHA256()))
    raw = body({**obj, "signature": b64u(der)})
    try:
        jws = parse_jws(raw)
    except AcmeError as error:
        assert error.type is ProblemType.MALFORMED
    else:  # a 64-octet DER encoding is possible, but it cannot verify as r || s
        _verify_fails(jws, _public(p256), ProblemType.UNAUTHORIZED)


@pytest.mark.parametrize("fill", [b"\x00", b"\xff"])
def test_degenerate_ecdsa_signature_rejected(p256: ec.EllipticCurvePrivateKey, fill: bytes) -> None:
    jws = parse_jws(body({**sign(p256), "signature": b64u(fill * 64)}))
    _verify_fails(jws, _public(p256), ProblemType.UNAUTHORIZED)


def test_hand_built_parsed_jws_with_bad_alg_does_not_verify(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    jws = parse_jws(body(sign(p256)))
    forged = ParsedJWS(**{**jws.__dict__, "alg": "none", "signature": b""})
    _verify_fails(forged, _public(p256), ProblemType.BAD_SIGNATURE_ALGORITHM)


# --- payload JSON -------------------------------------------------------------------------


def _payload(p256: ec.EllipticCurvePrivateKey, raw: bytes) -> ParsedJWS:
    return parse_jws(body(sign(p256, payload=raw)))


def _payload_fails(p256: ec.EllipticCurvePrivateKey, raw: bytes) -> AcmeError:
    jws = _payload(p256, raw)
    with pytest.raises(AcmeError) as info:
        jws.payload_json()
    assert info.value.type is ProblemType.MALFORMED
    return info.value


def test_post_as_get_payload_is_not_an_object(p256: ec.EllipticCurvePrivateKey) -> None:
    _payload_fails(p256, b"")


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"x"', b"1", b"{", b"{} {}", b"\xff{}"])
def test_payload_not_an_object(p256: ec.EllipticCurvePrivateKey, raw: bytes) -> None:
    _payload_fails(p256, raw)


def test_duplicate_keys_in_payload_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    error = _payload_fails(p256, b'{"status": "valid", "status": "deactivated"}')
    assert "duplicate" in error.detail
    _payload_fails(p256, b'{"a": {"b": 1, "b": 2}}')


def test_nesting_limit(p256: ec.EllipticCurvePrivateKey) -> None:
    ok = b'{"a":' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert _payload(p256, ok).payload_json()["a"] is not None
    deep = b'{"a":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"
    error = _payload_fails(p256, deep)
    assert "deeper" in error.detail


def test_brackets_inside_strings_do_not_nest(p256: ec.EllipticCurvePrivateKey) -> None:
    # Past the quick count (more brackets than levels), the exact scan skips strings.
    shallow = b'{"a": "' + b"[{" * MAX_JSON_DEPTH + b'", "b": [[1]]}'
    assert _payload(p256, shallow).payload_json()["b"] == [[1]]


def test_very_deep_nesting_is_malformed_not_recursion_error(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    _payload_fails(p256, b"[" * 100_000 + b"]" * 100_000)
    _payload_fails(p256, b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    _parse_fails(b'{"protected":' + b"[" * 100_000, ProblemType.MALFORMED)


def test_brackets_inside_strings_do_not_count(p256: ec.EllipticCurvePrivateKey) -> None:
    raw = json.dumps({"a": "[" * 1000 + '\\"{' * 100, "b": ["]]]"]}).encode()
    assert _payload(p256, raw).payload_json()["b"] == ["]]]"]


@pytest.mark.parametrize("digits", [101, 5000, 100_000])
def test_huge_integer_rejected(p256: ec.EllipticCurvePrivateKey, digits: int) -> None:
    _payload_fails(p256, b'{"n": ' + b"9" * digits + b"}")
    _payload_fails(p256, b'{"n": -' + b"9" * digits + b"}")


def test_long_but_bounded_integer_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    assert _payload(p256, b'{"n": ' + b"9" * 99 + b"}").payload_json()["n"] == 10**99 - 1


@pytest.mark.parametrize(
    "raw", [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}', b'{"n": 1e999}']
)
def test_non_finite_numbers_rejected(p256: ec.EllipticCurvePrivateKey, raw: bytes) -> None:
    _payload_fails(p256, raw)


def test_huge_float_literal_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    _payload_fails(p256, b'{"n": 0.' + b"1" * 100_000 + b"}")


@pytest.mark.parametrize("raw", [b'{"a": "\\ud800"}', b'{"\\udfff": 1}'])
def test_lone_surrogates_rejected(p256: ec.EllipticCurvePrivateKey, raw: bytes) -> None:
    _payload_fails(p256, raw)


def test_utf8_payload_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    raw = json.dumps({"contact": ["mailto:j\u00fcrgen@example.org"]}, ensure_ascii=False)
    assert _payload(p256, raw.encode()).payload_json() == json.loads(raw)


def test_non_utf8_payload_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    _payload_fails(p256, '{"a": "\u00e9"}'.encode("latin-1"))
    _payload_fails(p256, '{"a": 1}'.encode("utf-16"))


# --- robustness ---------------------------------------------------------------------------


def test_mutated_bodies_raise_only_acme_errors(p256: ec.EllipticCurvePrivateKey) -> None:
    rng = random.Random(8555)
    seed = json.dumps(sign(p256, payload=b'{"csr": "MIIB", "n": [1, 2.5, true]}')).encode()
    alphabet = b'{}[]",:.=+/ \\0aZ-_\x00\xff'
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[pos] = rng.choice(alphabet)
            elif action == 1:
                del data[pos]
            else:
                data.insert(pos, rng.choice(alphabet))
        try:
            jws = parse_jws(bytes(data))
            verify_jws(jws, _public(p256))
            jws.payload_json()
        except AcmeError:
            pass
