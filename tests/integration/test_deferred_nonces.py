"""Nonces spent by the operation itself (certctl.ra.replay) hold the same line as any other.

newOrder, finalize and the POST-as-GET reads of an order, an authorization and a
certificate carry their nonce into their first transaction (on PostgreSQL a read spends
it in the statement that reads; newOrder spends it first when it takes an hourly
allowance; an authorization's deactivation spends it before it changes anything).
Whatever the path, a nonce is accepted once: a replay is badNonce even where the
operation itself would have failed, concurrent uses succeed exactly once, a failed
operation still spends its nonce, and an account deactivated or rolled over after the
server cached it is refused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_problem,
    b64,
    csr_der,
    flattened,
    payload_bytes,
    race,
)

CONCURRENCY = 12


def _jws(wire: Wire, account: Account, url: str, payload: dict[str, Any] | None) -> dict[str, str]:
    header = wire.header(account.key, url, kid=account.url)
    return flattened(account.key, header, payload_bytes(payload))


def _send(wire: Wire, url: str, jws: dict[str, str]) -> httpx.Response:
    return wire.post(url, jws)


@pytest.fixture
def issued(wire: Wire) -> tuple[Account, str, dict[str, Any]]:
    account = wire.new_account()
    order_url, order, _ = wire.issue(account, "deferred.example.com")
    return account, order_url, order


Target = Callable[[Wire, Account, str, dict[str, Any]], tuple[str, dict[str, Any] | None]]
TARGETS: dict[str, Target] = {
    "order": lambda w, a, url, o: (url, None),
    "authz": lambda w, a, url, o: (o["authorizations"][0], None),
    "certificate": lambda w, a, url, o: (o["certificate"], None),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_replayed_read_is_bad_nonce(
    wire: Wire, issued: tuple[Account, str, dict[str, Any]], target: str
) -> None:
    account, order_url, order = issued
    url, payload = TARGETS[target](wire, account, order_url, order)
    jws = _jws(wire, account, url, payload)
    assert _send(wire, url, jws).status_code == 200
    assert_problem(_send(wire, url, jws), 400, "badNonce", wire.directory_url)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_read_of_nothing_spends_its_nonce_and_a_replay_says_so(
    wire: Wire, issued: tuple[Account, str, dict[str, Any]], target: str
) -> None:
    account, order_url, order = issued
    url, payload = TARGETS[target](wire, account, order_url, order)
    missing = url.rstrip("/") + "-missing"  # the same route, an id nobody has
    jws = _jws(wire, account, missing, payload)
    assert_problem(_send(wire, missing, jws), 404, "malformed", wire.directory_url)
    assert_problem(_send(wire, missing, jws), 400, "badNonce", wire.directory_url)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_concurrent_uses_of_one_nonce_read_exactly_once(
    wire: Wire, issued: tuple[Account, str, dict[str, Any]], target: str
) -> None:
    account, order_url, order = issued
    url, payload = TARGETS[target](wire, account, order_url, order)
    results = race(wire, url, [_jws(wire, account, url, payload)] * CONCURRENCY)
    assert Counter(r.status_code for r in results) == {200: 1, 400: CONCURRENCY - 1}


def test_a_replayed_deactivation_is_bad_nonce(wire: Wire) -> None:
    account = wire.new_account()
    _, order, _ = wire.issue(account, "deactivate-authz.example.com")
    url = order["authorizations"][0]
    jws = _jws(wire, account, url, {"status": "deactivated"})
    done = _send(wire, url, jws)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "deactivated"
    assert_problem(_send(wire, url, jws), 400, "badNonce", wire.directory_url)


def test_concurrent_deactivations_with_one_nonce_succeed_once(wire: Wire) -> None:
    account = wire.new_account()
    _, order, _ = wire.issue(account, "deactivate-race.example.com")
    url = order["authorizations"][0]
    results = race(wire, url, [_jws(wire, account, url, {"status": "deactivated"})] * CONCURRENCY)
    assert Counter(r.status_code for r in results) == {200: 1, 400: CONCURRENCY - 1}
    for response in results:
        if response.status_code == 400:
            assert_problem(response, 400, "badNonce", wire.directory_url)


def test_a_finalize_that_fails_still_spends_its_nonce_and_a_replay_says_so(
    wire: Wire, issued: tuple[Account, str, dict[str, Any]]
) -> None:
    account, _, order = issued
    url = order["finalize"]
    payload = {"csr": b64(csr_der(Key.ec256(), ["deferred.example.com"]))}
    jws = _jws(wire, account, url, payload)
    # The order is valid already: orderNotReady, and the nonce is gone all the same.
    assert_problem(_send(wire, url, jws), 403, "orderNotReady", wire.directory_url)
    assert_problem(_send(wire, url, jws), 400, "badNonce", wire.directory_url)


def test_concurrent_finalizes_with_one_nonce_issue_once(wire: Wire) -> None:
    account = wire.new_account()
    _, order = wire.ready_order(account, "deferred-race.example.com")
    url = order["finalize"]
    payload = {"csr": b64(csr_der(Key.ec256(), ["deferred-race.example.com"]))}
    results = race(wire, url, [_jws(wire, account, url, payload)] * CONCURRENCY)
    outcomes = Counter(r.status_code for r in results)
    assert outcomes == {200: 1, 400: CONCURRENCY - 1}, outcomes
    for response in results:
        if response.status_code == 400:
            assert_problem(response, 400, "badNonce", wire.directory_url)


def test_an_account_deactivated_after_it_was_cached_is_refused(wire: Wire) -> None:
    account = wire.new_account()
    order_url, order, _ = wire.issue(account, "deactivated.example.com")  # cached now
    deactivated = wire.as_account(account, account.url, {"status": "deactivated"})
    assert deactivated.status_code == 200, deactivated.text
    for url in (order_url, order["authorizations"][0], order["certificate"], order["finalize"]):
        payload = {"csr": "AA"} if url.endswith("/finalize") else None
        response = _send(wire, url, _jws(wire, account, url, payload))
        assert_problem(response, 403, "unauthorized", wire.directory_url)


def test_a_request_signed_with_a_rolled_over_key_is_refused(wire: Wire) -> None:
    account = wire.new_account()
    order_url, _, _ = wire.issue(account, "rolled.example.com")  # the old key is cached
    new_key = Key.ec256()
    inner_header = {"alg": new_key.alg, "jwk": new_key.jwk, "url": wire["keyChange"]}
    inner = flattened(
        new_key, inner_header, payload_bytes({"account": account.url, "oldKey": account.key.jwk})
    )
    rolled = wire.as_account(account, wire["keyChange"], inner)
    assert rolled.status_code == 200, rolled.text
    old = _send(wire, order_url, _jws(wire, account, order_url, None))
    assert old.status_code in (401, 403), old.text
    renewed = Account(new_key, account.url)
    assert _send(wire, order_url, _jws(wire, renewed, order_url, None)).status_code == 200


# -- newOrder: its nonce is spent in the transaction that inserts the order --------------


def _order_count(wire: Wire, account: Account) -> int:
    found = wire.as_account(account, account.url, {})
    assert found.status_code == 200, found.text
    listed = wire.as_account(account, found.json()["orders"])
    assert listed.status_code == 200, listed.text
    return len(listed.json()["orders"])


def _new_order_jws(wire: Wire, account: Account, name: str) -> dict[str, str]:
    payload = {"identifiers": [{"type": "dns", "value": name}]}
    return _jws(wire, account, wire["newOrder"], payload)


def test_a_replayed_new_order_is_bad_nonce_and_creates_nothing(wire: Wire) -> None:
    account = wire.new_account()
    jws = _new_order_jws(wire, account, "replayed-order.example.com")
    assert _send(wire, wire["newOrder"], jws).status_code == 201
    assert_problem(_send(wire, wire["newOrder"], jws), 400, "badNonce", wire.directory_url)
    assert _order_count(wire, account) == 1


def test_concurrent_uses_of_one_new_order_nonce_create_one_order(wire: Wire) -> None:
    account = wire.new_account()
    jws = _new_order_jws(wire, account, "raced-order.example.com")
    results = race(wire, wire["newOrder"], [jws] * CONCURRENCY)
    assert Counter(r.status_code for r in results) == {201: 1, 400: CONCURRENCY - 1}
    for response in results:
        if response.status_code == 400:
            assert_problem(response, 400, "badNonce", wire.directory_url)
    assert _order_count(wire, account) == 1


def _rejected_orders(wire: Wire) -> float:
    text = wire.http.get(f"{wire.served.base_url}/metrics").text
    found = re.search(r"^certctl_acme_new_order_rejected_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_refused_new_order_still_spends_its_nonce_and_a_replay_says_so(wire: Wire) -> None:
    account = wire.new_account()
    before = _rejected_orders(wire)
    jws = _new_order_jws(wire, account, "-not-a-name-.example.com")
    refused = _send(wire, wire["newOrder"], jws)
    assert_problem(refused, 400, "rejectedIdentifier", wire.directory_url)
    assert _rejected_orders(wire) == before + 1
    # The replay is refused for its nonce, not as an order: the metric does not count it.
    assert_problem(_send(wire, wire["newOrder"], jws), 400, "badNonce", wire.directory_url)
    assert _rejected_orders(wire) == before + 1
    assert _order_count(wire, account) == 0


def test_a_deactivated_account_cannot_order(wire: Wire) -> None:
    account = wire.new_account()
    wire.issue(account, "deactivated-order.example.com")  # the account is cached now
    deactivated = wire.as_account(account, account.url, {"status": "deactivated"})
    assert deactivated.status_code == 200, deactivated.text
    jws = _new_order_jws(wire, account, "after-deactivation.example.com")
    assert_problem(_send(wire, wire["newOrder"], jws), 403, "unauthorized", wire.directory_url)
