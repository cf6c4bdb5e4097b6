"""Account key rollover (RFC 8555 §7.3.5) on the default instance.

The outer JWS is the account's ordinary kid request; its payload is the inner JWS, signed
by the new key, naming the account and the old key. Every refusal leaves the account on
its old key; the swap is compare-and-set, so of two concurrent rollovers one wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from acme import jws as acme_jws
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from tests.integration.acme_lib import acme_client
from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_problem,
    b64,
    flattened,
    race,
)

URN = "urn:ietf:params:acme:error:"
RACE_ROUNDS = 5


def inner_jws(
    new_key: Key,
    url: str,
    payload: Mapping[str, Any],
    *,
    header: Mapping[str, Any] | None = None,
    signer: Key | None = None,
) -> dict[str, str]:
    """The inner JWS: by default correct (alg, jwk of ``new_key``, url; no nonce)."""
    protected = {"alg": new_key.alg, "jwk": new_key.jwk, "url": url} if header is None else header
    return flattened(signer or new_key, protected, json.dumps(dict(payload)).encode())


def rollover_payload(account: Account, old_key: Key | None = None) -> dict[str, Any]:
    return {"account": account.url, "oldKey": (old_key or account.key).jwk}


def key_change(wire: Wire, account: Account, inner: Mapping[str, str]) -> httpx.Response:
    """The outer JWS: the account's kid request to keyChange carrying ``inner``."""
    return wire.as_account(account, wire["keyChange"], json.dumps(dict(inner)).encode())


def assert_key_is(wire: Wire, account: Account, key: Key, *refused: Key) -> None:
    """The account answers to ``key`` and to none of ``refused``."""
    ok = wire.signed(key, account.url, None, kid=account.url)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "valid"
    for other in refused:
        response = wire.signed(other, account.url, None, kid=account.url)
        if other.alg == key.alg:
            assert_problem(response, 403, "unauthorized", wire.directory_url)
        else:  # an alg that cannot go with the account's key type is refused before that
            assert_problem(response, 400, "badSignatureAlgorithm", wire.directory_url)


# -- the happy path, through certbot's acme library ------------------------------------------


def test_rollover_with_the_acme_library(wire: Wire) -> None:
    client = acme_client(wire.directory_url, wire.served.root_pem_path)
    regr = client.register()
    assert regr.uri is not None
    url = client.acme.directory["keyChange"]
    new_key = Key.ec256()
    new_jwk = JWKEC(key=new_key.private)
    old_jwk = JWKEC(key=client.key.private).public_key()
    payload = {"account": regr.uri, "oldKey": old_jwk.to_partial_json()}
    # acme.jws.JWS protects alg, jwk and url; with nonce None and no kid it carries neither.
    inner = acme_jws.JWS.sign(
        payload=json.dumps(payload).encode(), key=new_jwk, alg=ES256, nonce=None, url=url
    )
    response = client.net.post(url, inner, new_nonce_url=client.acme.directory["newNonce"])
    assert response.status_code == 200, response.text
    assert response.headers["Location"] == regr.uri
    assert response.json()["status"] == "valid"

    # The old key no longer authenticates the account ...
    with pytest.raises(messages.Error) as refused:
        client.post_as_get(regr.uri)
    assert refused.value.typ == URN + "unauthorized"
    old = Account(client.key, regr.uri)
    lookup = wire.signed(old.key, wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(lookup, 400, "accountDoesNotExist", wire.directory_url)

    # ... the new one does, for reads and for issuance, and finds the account by key.
    client.net.key = new_jwk
    assert client.acme.query_registration(regr).body.status == "valid"
    order, chain, _ = client.issue("rolled.example.test")
    assert order.body.status == messages.STATUS_VALID
    assert "BEGIN CERTIFICATE" in chain
    found = wire.signed(new_key, wire["newAccount"], {"onlyReturnExisting": True})
    assert (found.status_code, found.headers["Location"]) == (200, regr.uri)


def test_rollover_with_the_raw_client_and_back(wire: Wire) -> None:
    account = wire.new_account()
    new_key = Key.rsa(2048)  # another key type is fine: any key the server accepts
    response = key_change(
        wire, account, inner_jws(new_key, wire["keyChange"], rollover_payload(account))
    )
    assert response.status_code == 200, response.text
    assert_key_is(wire, account, new_key, account.key)

    # Rolling back to the original key is a rollover like any other.
    rolled = Account(new_key, account.url)
    back = key_change(
        wire, rolled, inner_jws(account.key, wire["keyChange"], rollover_payload(rolled))
    )
    assert back.status_code == 200, back.text
    assert_key_is(wire, account, account.key, new_key)


# -- every inner check refused; the account keeps its key ----------------------------------------


Spoil = Callable[[Wire, Account, Key], dict[str, str]]


def _with_kid(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    header = {"alg": new_key.alg, "kid": account.url, "url": wire["keyChange"]}
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), header=header)


def _with_kid_and_jwk(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    header = {
        "alg": new_key.alg,
        "jwk": new_key.jwk,
        "kid": account.url,
        "url": wire["keyChange"],
    }
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), header=header)


def _with_nonce(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    header = {"alg": new_key.alg, "jwk": new_key.jwk, "url": wire["keyChange"]}
    header["nonce"] = wire.nonce()
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), header=header)


def _other_url(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["newAccount"], rollover_payload(account))


def _no_url(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    header = {"alg": new_key.alg, "jwk": new_key.jwk}
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), header=header)


def _other_account(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    other = wire.new_account()
    payload = {"account": other.url, "oldKey": account.key.jwk}
    return inner_jws(new_key, wire["keyChange"], payload)


def _no_account(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["keyChange"], {"oldKey": account.key.jwk})


def _wrong_old_key(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account, Key.ec256()))


def _no_old_key(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["keyChange"], {"account": account.url})


def _signed_by_other_key(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), signer=Key.ec256())


def _signed_by_old_key(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(new_key, wire["keyChange"], rollover_payload(account), signer=account.key)


def _same_key(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    return inner_jws(account.key, wire["keyChange"], rollover_payload(account))


def _tampered_payload(wire: Wire, account: Account, new_key: Key) -> dict[str, str]:
    inner = inner_jws(new_key, wire["keyChange"], rollover_payload(account))
    other = wire.new_account()
    inner["payload"] = b64(json.dumps(rollover_payload(other)).encode())
    return inner


@pytest.mark.parametrize(
    ("spoil", "status", "problem"),
    [
        pytest.param(_with_kid, 400, "malformed", id="inner-kid"),
        pytest.param(_with_kid_and_jwk, 400, "malformed", id="inner-kid-and-jwk"),
        pytest.param(_with_nonce, 400, "malformed", id="inner-nonce"),
        pytest.param(_other_url, 400, "malformed", id="inner-url-differs"),
        pytest.param(_no_url, 400, "malformed", id="inner-no-url"),
        pytest.param(_same_key, 400, "malformed", id="new-key-is-current-key"),
        pytest.param(_no_old_key, 400, "malformed", id="no-old-key"),
        pytest.param(_other_account, 403, "unauthorized", id="account-mismatch"),
        pytest.param(_no_account, 403, "unauthorized", id="no-account"),
        pytest.param(_wrong_old_key, 403, "unauthorized", id="old-key-wrong"),
        pytest.param(_signed_by_other_key, 403, "unauthorized", id="signed-by-other-key"),
        pytest.param(_signed_by_old_key, 403, "unauthorized", id="signed-by-old-key"),
        pytest.param(_tampered_payload, 403, "unauthorized", id="payload-swapped"),
    ],
)
def test_inner_jws_checks(wire: Wire, spoil: Spoil, status: int, problem: str) -> None:
    account = wire.new_account()
    new_key = Key.ec256()
    response = key_change(wire, account, spoil(wire, account, new_key))
    assert_problem(response, status, problem, wire.directory_url)
    assert_key_is(wire, account, account.key, new_key)


def test_outer_jws_must_use_kid(wire: Wire) -> None:
    account = wire.new_account()
    new_key = Key.ec256()
    inner = inner_jws(new_key, wire["keyChange"], rollover_payload(account))
    response = wire.signed(account.key, wire["keyChange"], json.dumps(inner).encode())
    assert_problem(response, 400, "malformed", wire.directory_url)
    assert_key_is(wire, account, account.key, new_key)


def test_outer_payload_must_be_a_jws(wire: Wire) -> None:
    account = wire.new_account()
    for payload in (b"{}", b'"not a jws"', json.dumps(rollover_payload(account)).encode()):
        response = wire.as_account(account, wire["keyChange"], payload)
        assert_problem(response, 400, "malformed", wire.directory_url)
    assert_key_is(wire, account, account.key)


def test_new_key_of_another_account_is_409_with_its_location(wire: Wire) -> None:
    account = wire.new_account()
    holder = wire.new_account()
    inner = inner_jws(holder.key, wire["keyChange"], rollover_payload(account))
    response = key_change(wire, account, inner)
    assert_problem(response, 409, "malformed", wire.directory_url)
    assert response.headers["Location"] == holder.url
    assert_key_is(wire, account, account.key)
    assert_key_is(wire, holder, holder.key)


def test_new_key_blocked_by_key_compromise_is_bad_public_key(wire: Wire) -> None:
    owner = wire.new_account()
    _, order, cert_key = wire.issue(owner, "compromised-rollover.example.test")
    chain = wire.as_account(owner, order["certificate"]).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    certificate = b64(leaf.public_bytes(serialization.Encoding.DER))
    # Revoked by the certificate key itself, for keyCompromise: the key is now blocked.
    revoked = wire.signed(cert_key, wire["revokeCert"], {"certificate": certificate, "reason": 1})
    assert revoked.status_code == 200, revoked.text

    account = wire.new_account()
    inner = inner_jws(cert_key, wire["keyChange"], rollover_payload(account))
    response = key_change(wire, account, inner)
    assert_problem(response, 400, "badPublicKey", wire.directory_url)
    assert_key_is(wire, account, account.key, cert_key)


# -- two rollovers of one account at once -------------------------------------------------------


def _race(wire: Wire, account: Account, new_keys: list[Key]) -> list[httpx.Response]:
    """Post one rollover per new key at the same moment, each on its own connection.

    The bodies (and their nonces) are built first, so the requests differ only in the key.
    """
    bodies = []
    for new_key in new_keys:
        inner = inner_jws(new_key, wire["keyChange"], rollover_payload(account))
        header = wire.header(account.key, wire["keyChange"], kid=account.url)
        bodies.append(flattened(account.key, header, json.dumps(inner).encode()))
    return race(wire, wire["keyChange"], bodies)


def test_concurrent_rollovers_have_exactly_one_winner(wire: Wire) -> None:
    """Of two simultaneous rollovers exactly one is applied. The other is refused either
    at the compare-and-set (409: the key changed under it) or, when it arrives after the
    winner committed, at authentication (403: the old key no longer signs for the
    account). No interleaving may apply both, or neither, or answer anything else."""
    outcomes: list[str] = []
    for _ in range(RACE_ROUNDS):
        account = wire.new_account()
        new_keys = [Key.ec256(), Key.ec256()]
        responses = _race(wire, account, new_keys)
        winners = [i for i, r in enumerate(responses) if r.status_code == 200]
        assert len(winners) == 1, [(r.status_code, r.text) for r in responses]
        (winner,) = winners
        loser = responses[1 - winner]
        if loser.status_code == 409:
            assert_problem(loser, 409, "malformed", wire.directory_url)
            outcomes.append("409")
        else:
            assert_problem(loser, 403, "unauthorized", wire.directory_url)
            outcomes.append("403")
        assert responses[winner].headers["Location"] == account.url
        # The account's key is the winner's: neither the loser's nor the old one works.
        assert_key_is(wire, account, new_keys[winner], new_keys[1 - winner], account.key)
    assert len(outcomes) == RACE_ROUNDS
