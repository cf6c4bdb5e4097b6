"""Findings of a hostile-input probe of the ACME server, replayed over real sockets: each
request once got a wrong answer (a frozen server, a 500, a stored bad contact, an account
usable without its private key) and must now get the right refusal."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.wire import Key, Wire, assert_problem, b64

# An unterminated string of escaped quotes past the bracket count: the old depth scan
# spent 14 s of CPU, holding the GIL, on this 64 KiB body.
DEPTH_PROBE = b"{" * 33 + b'"' + b'\\"' * 32_000
STRING_FIRST = b'"' + b'\\"' * 32_000 + b"[" * 33


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(DEPTH_PROBE, "nested deeper than 32 levels", id="probe"),
        pytest.param(STRING_FIRST, "not valid UTF-8 JSON", id="string-first"),
    ],
)
def test_hostile_json_is_refused_at_once(wire: Wire, body: bytes, detail: str) -> None:
    # Not a performance target: the old scan took 14 s on this body (7 s on a fast host);
    # the bound leaves a loaded CI machine room for a 64 KiB round trip.
    started = time.monotonic()
    response = wire.post(wire["newAccount"], body)
    took = time.monotonic() - started
    doc = assert_problem(response, 400, "malformed", wire.directory_url)
    assert detail in doc["detail"], doc
    assert took < 3.0, f"the server spent {took:.1f} s on a {len(body)}-octet body"
    # ... and it still answers.
    assert wire.http.get(wire.directory_url).status_code == 200


def _binding(wire: Wire, key: Key, **header: Any) -> dict[str, str]:
    """An external account binding with ``header`` changed; its MAC is never reached."""
    protected = {"alg": "HS256", "kid": "kid-probe", "url": wire["newAccount"]} | header
    return {
        "protected": b64(json.dumps(protected).encode()),
        "payload": b64(json.dumps(key.jwk).encode()),
        "signature": b64(b"\0" * 32),
    }


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        pytest.param({"alg": ["HS256"]}, "badSignatureAlgorithm", id="alg-array"),
        pytest.param({"alg": {"HS256": 1}}, "badSignatureAlgorithm", id="alg-object"),
        pytest.param({"kid": ["kid-probe"]}, "malformed", id="kid-array"),
        pytest.param({"url": {"u": 1}}, "malformed", id="url-object"),
    ],
)
def test_binding_header_of_the_wrong_type_is_a_problem_not_a_500(
    wire: Wire, header: dict[str, Any], problem: str
) -> None:
    key = Key.ec256()
    body = {"termsOfServiceAgreed": True, "externalAccountBinding": _binding(wire, key, **header)}
    response = wire.signed(key, wire["newAccount"], body)
    assert_problem(response, 400, problem, wire.directory_url)


@pytest.mark.parametrize("contact", ["mailto:a@b.com\n", "mailto:a@b.com\r\n"])
def test_contact_with_a_trailing_newline_is_invalid_and_not_stored(
    wire: Wire, contact: str
) -> None:
    key = Key.ec256()
    response = wire.signed(
        key, wire["newAccount"], {"termsOfServiceAgreed": True, "contact": [contact]}
    )
    assert_problem(response, 400, "invalidContact", wire.directory_url)
    response = wire.signed(key, wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(response, 400, "accountDoesNotExist", wire.directory_url)
    # Nor through an update of an existing account (RFC 8555 §7.3.2).
    account = wire.new_account(contact=["mailto:a@b.com"])
    response = wire.as_account(account, account.url, {"contact": [contact]})
    assert_problem(response, 400, "invalidContact", wire.directory_url)
    assert wire.as_account(account, account.url).json()["contact"] == ["mailto:a@b.com"]


def test_ed25519_identity_key_is_a_bad_public_key(wire: Wire) -> None:
    # The identity point verifies R = identity, S = 0 for every message: an account with
    # this key would be anyone's. Before the fix this created the account (201).
    identity = b"\x01" + b"\x00" * 31
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(identity)}
    header = {"alg": "EdDSA", "jwk": jwk, "nonce": wire.nonce(), "url": wire["newAccount"]}
    jws = {
        "protected": b64(json.dumps(header).encode()),
        "payload": b64(json.dumps({"termsOfServiceAgreed": True}).encode()),
        "signature": b64(identity + b"\x00" * 32),
    }
    response = wire.post(wire["newAccount"], jws)
    assert_problem(response, 400, "badPublicKey", wire.directory_url)
