"""The external account binding's protected header members of the wrong JSON type are
refused as problems, never a 500: an array or object "alg" once raised TypeError."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from certctl.acme.eab import parse_binding, verify_binding
from certctl.acme.jwk import PublicJWK
from certctl.domain.errors import AcmeError, ProblemType
from tests.unit.acme.jose_helpers import b64u, jwk_of

URL = "https://ca.test/acme/new-account"
MAC_KEY = b"0123456789abcdef0123456789abcdef"
KEY = ec.generate_private_key(ec.SECP256R1())
ACCOUNT = PublicJWK.from_public_key(KEY.public_key())
WRONG_TYPES: list[Any] = [["HS256"], {"HS256": 1}, 256, 1.5, True, None]


def _binding(**changes: Any) -> dict[str, object]:
    """A binding MACed by hand with MAC_KEY; a change of None drops the member."""
    header: dict[str, Any] = {"alg": "HS256", "kid": "kid-1", "url": URL} | changes
    protected = b64u(json.dumps({k: v for k, v in header.items() if v is not None}).encode())
    payload = b64u(json.dumps(jwk_of(KEY)).encode())
    mac = hmac.new(MAC_KEY, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64u(mac)}


def _refused(binding: dict[str, object]) -> ProblemType:
    with pytest.raises(AcmeError) as info:
        parse_binding(binding, account_jwk=ACCOUNT, url=URL)
    return info.value.type


def test_the_hand_made_binding_verifies() -> None:
    verify_binding(parse_binding(_binding(), account_jwk=ACCOUNT, url=URL), MAC_KEY)


@pytest.mark.parametrize("alg", WRONG_TYPES)
def test_alg_of_another_type_is_bad_signature_algorithm(alg: object) -> None:
    # As the outer JWS answers a non-string "alg" (certctl.acme.jws._header_alg).
    assert _refused(_binding(alg=alg)) is ProblemType.BAD_SIGNATURE_ALGORITHM


@pytest.mark.parametrize("kid", [*WRONG_TYPES, ["kid-1"], ""])
def test_kid_of_another_type_is_malformed(kid: object) -> None:
    assert _refused(_binding(kid=kid)) is ProblemType.MALFORMED


@pytest.mark.parametrize("url", [*WRONG_TYPES, [URL], {URL: URL}, ""])
def test_url_of_another_type_is_malformed(url: object) -> None:
    assert _refused(_binding(url=url)) is ProblemType.MALFORMED


def test_url_of_another_value_is_unauthorized() -> None:
    assert _refused(_binding(url=URL + "x")) is ProblemType.UNAUTHORIZED


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
@pytest.mark.parametrize("value", [["x"], {"x": 1}, 1, None])
def test_outer_members_of_another_type_are_malformed(member: str, value: object) -> None:
    binding: dict[str, object] = {**_binding(), member: value}
    assert _refused(binding) is ProblemType.MALFORMED


@pytest.mark.parametrize(
    "extra", [{"crit": ["exp"], "exp": 1}, {"crit": []}, {"b64": False}, {"b64": True}]
)
def test_crit_and_b64_are_refused_as_in_the_outer_jws(extra: dict[str, Any]) -> None:
    """RFC 7515 §4.1.11, RFC 7797 §3: refused, not ignored (the MAC would still verify)."""
    assert _refused(_binding(**extra)) is ProblemType.MALFORMED
