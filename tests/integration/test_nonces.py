"""Anti-replay nonces over real sockets (RFC 8555 §6.5, §7.2).

Nonces are HMAC-authenticated with a key kept in the database and spent in the database,
so their life must not depend on the process: a spent nonce stays spent across a restart
and an unspent one stays good.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.integration.wire import (
    Account,
    Wire,
    assert_acme_headers,
    assert_problem,
    b64,
    flattened,
    race,
)

CONCURRENCY = 20


@pytest.fixture(scope="module")
def account(wire: Wire) -> Account:
    return wire.new_account()


def _read_account(wire: Wire, account: Account, nonce: str) -> httpx.Response:
    """POST-as-GET of the account with a chosen nonce (cheap, changes nothing)."""
    return wire.signed(account.key, account.url, None, kid=account.url, nonce=nonce)


def test_missing_nonce_is_bad_nonce(wire: Wire, account: Account) -> None:
    header = wire.header(account.key, account.url, kid=account.url)
    del header["nonce"]
    response = wire.post(account.url, flattened(account.key, header, b""))
    assert_problem(response, 400, "badNonce", wire.directory_url)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b64(b"\x00" * 40), id="right-length-no-mac"),
        pytest.param("Zm9vYmFy", id="short"),
        pytest.param(b64(b"\xff" * 300), id="long"),
    ],
)
def test_garbage_nonce_is_bad_nonce(wire: Wire, account: Account, garbage: str) -> None:
    response = _read_account(wire, account, garbage)
    assert_problem(response, 400, "badNonce", wire.directory_url)


def test_replayed_nonce_is_bad_nonce(wire: Wire, account: Account) -> None:
    nonce = wire.nonce()
    assert _read_account(wire, account, nonce).status_code == 200
    response = _read_account(wire, account, nonce)
    assert_problem(response, 400, "badNonce", wire.directory_url)


def test_concurrent_uses_of_one_nonce_succeed_exactly_once(wire: Wire, account: Account) -> None:
    jws = flattened(account.key, wire.header(account.key, account.url, kid=account.url), b"")
    results = race(wire, account.url, [jws] * CONCURRENCY)
    outcomes = Counter(r.status_code for r in results)
    assert outcomes == {200: 1, 400: CONCURRENCY - 1}, outcomes
    for response in results:
        if response.status_code == 400:
            assert_problem(response, 400, "badNonce", wire.directory_url)


def test_every_response_carries_a_fresh_usable_nonce(wire: Wire, account: Account) -> None:
    responses = {
        "directory": wire.http.get(wire.directory_url),
        "head new-nonce": wire.http.head(wire["newNonce"]),
        "get new-nonce": wire.http.get(wire["newNonce"]),
        "404 unknown path": wire.http.get(wire.directory_url.replace("directory", "nothing")),
        "404 unknown order": wire.as_account(
            account, wire["newOrder"].replace("new-order", "order/ord-nosuchorder")
        ),
        "405 GET new-account": wire.http.get(wire["newAccount"]),
        "400 bad request": wire.post(wire["newAccount"], b"{}"),
        "200 account": wire.as_account(account, account.url),
    }
    nonces = {name: assert_acme_headers(r, wire.directory_url) for name, r in responses.items()}
    assert responses["404 unknown path"].status_code == 404
    assert responses["404 unknown order"].status_code == 404
    assert responses["405 GET new-account"].status_code == 405
    assert len(set(nonces.values())) == len(nonces), nonces
    # Every one of them is a nonce the server honours.
    for name, nonce in nonces.items():
        assert _read_account(wire, account, nonce).status_code == 200, name


def test_new_nonce_head_200_get_204_no_store(wire: Wire) -> None:
    head = wire.http.head(wire["newNonce"])
    get = wire.http.get(wire["newNonce"])
    assert (head.status_code, get.status_code) == (200, 204)
    for response in (head, get):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.content == b""
        assert_acme_headers(response, wire.directory_url)


def test_nonces_outlive_a_restart_but_spent_ones_stay_spent(wire: Wire, account: Account) -> None:
    spent, unspent = wire.nonce(), wire.nonce()
    assert _read_account(wire, account, spent).status_code == 200
    wire.served.restart()
    assert_problem(_read_account(wire, account, spent), 400, "badNonce", wire.directory_url)
    assert _read_account(wire, account, unspent).status_code == 200
    # Nonces minted after the restart work as well.
    assert _read_account(wire, account, wire.nonce()).status_code == 200


def test_tampered_nonce_is_bad_nonce(wire: Wire, account: Account) -> None:
    """Right shape, minted by this server, one MAC character changed."""
    real = wire.nonce()
    forged = real[:-2] + ("AA" if real[-2:] != "AA" else "BA")
    response = _read_account(wire, account, forged)
    assert_problem(response, 400, "badNonce", wire.directory_url)
    # The untouched nonce is still good: refusing the forgery spent nothing.
    assert _read_account(wire, account, real).status_code == 200
