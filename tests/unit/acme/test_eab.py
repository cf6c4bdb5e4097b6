"""External account binding: a binding made by certbot's acme library verifies; every
structural rule of RFC 8555 §7.3.4 is enforced; a wrong MAC key never verifies."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWKEC

from certctl.acme.b64 import b64url_encode
from certctl.acme.eab import parse_binding, verify_binding
from certctl.acme.jwk import PublicJWK
from certctl.domain.errors import AcmeError, ProblemType

URL = "https://ca.test/acme/new-account"
MAC_KEY = b"0123456789abcdef0123456789abcdef"


def _binding(key: ec.EllipticCurvePrivateKey, kid: str = "kid-1") -> dict[str, Any]:
    directory = messages.Directory({"newAccount": URL})
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=JWKEC(key=key.public_key()),
        kid=kid,
        hmac_key=base64.urlsafe_b64encode(MAC_KEY).decode().rstrip("="),
        directory=directory,
    )
    result: dict[str, Any] = json.loads(json.dumps(eab))
    return result


def _account(key: ec.EllipticCurvePrivateKey) -> PublicJWK:
    return PublicJWK.from_public_key(key.public_key())


def test_binding_from_certbots_library_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    parsed = parse_binding(_binding(key), account_jwk=_account(key), url=URL)
    assert parsed.kid == "kid-1"
    verify_binding(parsed, MAC_KEY)
    with pytest.raises(AcmeError) as info:
        verify_binding(parsed, b"another key of thirty-two bytes!")
    assert info.value.type is ProblemType.UNAUTHORIZED


def test_binding_for_another_account_key_is_refused() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AcmeError) as info:
        parse_binding(_binding(key), account_jwk=_account(other), url=URL)
    assert info.value.type is ProblemType.UNAUTHORIZED


def test_binding_for_another_url_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AcmeError) as info:
        parse_binding(_binding(key), account_jwk=_account(key), url=URL + "x")
    assert info.value.type is ProblemType.UNAUTHORIZED


def _with_header(binding: dict[str, Any], **changes: Any) -> dict[str, Any]:
    header = json.loads(base64.urlsafe_b64decode(binding["protected"] + "=="))
    header.update(changes)
    header = {k: v for k, v in header.items() if v is not None}
    return binding | {"protected": b64url_encode(json.dumps(header).encode())}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"alg": "ES256"}, ProblemType.BAD_SIGNATURE_ALGORITHM),
        ({"alg": "none"}, ProblemType.BAD_SIGNATURE_ALGORITHM),
        ({"kid": None}, ProblemType.MALFORMED),
        ({"nonce": "abc"}, ProblemType.MALFORMED),
    ],
)
def test_header_rules(changes: dict[str, Any], problem: ProblemType) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AcmeError) as info:
        parse_binding(_with_header(_binding(key), **changes), account_jwk=_account(key), url=URL)
    assert info.value.type is problem


@pytest.mark.parametrize(
    "binding", ["compact.jws.string", {"protected": "e30", "payload": "e30"}, {"a": 1}]
)
def test_not_a_flattened_jws(binding: object) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AcmeError) as info:
        parse_binding(binding, account_jwk=_account(key), url=URL)
    assert info.value.type is ProblemType.MALFORMED
