"""Races across replicas, sent to each replica's own port (haproxy bypassed).

A row lock taken by the test holds every contender at the server's compare-and-set until
all of them are there, so the race is real on every run, not a matter of timing: the
eight finalizes (or the two key changes) wait on one row in three different processes,
and are let go together.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from acme import jws as acme_jws
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from tests.fleet.helpers import Background, Direct, DirectAccount, FleetDb, is_problem
from tests.integration.wire import Key
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]


@pytest.fixture
def fleet(shared_fleet: Fleet) -> Fleet:
    """This module's tests leave the fleet as they found it: they share one."""
    return shared_fleet


FINALIZERS = 8
JOIN_TIMEOUT_S = 30.0
GC_RACE_ATTEMPTS = 5


def test_concurrent_finalizes_on_three_replicas_issue_once(fleet: Fleet) -> None:
    db = FleetDb(fleet.database_url)
    directs = [Direct(fleet, i) for i in range(len(fleet.replicas))]
    account = directs[0].new_account()
    order_url, order = directs[1].ready_order(account, "race.fleet.test")
    order_id = order_url.rsplit("/", 1)[1]
    # Eight finalize requests, each with its own nonce and CSR key, for replicas 1,2,3,1,...
    jobs = [
        (directs[i % len(directs)], directs[i % 3].finalize_body(account, order))
        for i in range(FINALIZERS)
    ]

    with db.holding(db.row_lock("acme_orders", order_id)):
        threads = [Background(d.post, order["finalize"], body) for d, body in jobs]
        waiting = db.wait_blocked(FINALIZERS)
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert waiting == FINALIZERS, f"only {waiting} finalizes reached the compare-and-set"

    responses: list[httpx.Response] = []
    for thread in threads:
        assert thread.error is None, thread.error
        responses.append(thread.result)
    won = [r for r in responses if r.status_code == 200]
    assert len(won) == 1, [(r.status_code, r.text) for r in responses]
    assert won[0].json()["status"] == "valid"
    for response in responses:
        if response is not won[0]:
            assert is_problem(response, 403, "orderNotReady"), response.text

    certificates = [c for c in db.certificates() if c[2] == order_id]
    assert len(certificates) == 1, certificates
    assert db.order_status(order_id) == "valid"
    # Every replica serves the one certificate.
    cert_url: str = won[0].json()["certificate"]
    chains = {d.signed(account.key, cert_url, None, kid=account.url).text for d in directs}
    assert len(chains) == 1
    for d in directs:
        d.close()


def _inner(account: DirectAccount, new_key: Key, url: str) -> dict[str, Any]:
    """RFC 8555 §7.3.5: protected {alg, jwk (the new key), url}, no nonce, no kid; payload
    {account, oldKey}; signed by the new key. Built with josepy (acme.jws.JWS)."""
    old_jwk = JWKEC(key=account.key.private).public_key()
    payload = {"account": account.url, "oldKey": old_jwk.to_partial_json()}
    inner = acme_jws.JWS.sign(
        payload=json.dumps(payload).encode(),
        key=JWKEC(key=new_key.private),
        alg=ES256,
        nonce=None,
        url=url,
    )
    body: dict[str, Any] = json.loads(inner.json_dumps())
    assert set(body) == {"protected", "payload", "signature"}, body  # flattened
    return body


def test_concurrent_key_changes_on_two_replicas(fleet: Fleet) -> None:
    db = FleetDb(fleet.database_url)
    directs = [Direct(fleet, i) for i in range(len(fleet.replicas))]
    account = directs[0].new_account()
    url = directs[0]["keyChange"]
    new_keys = [Key.ec256(), Key.ec256()]
    contenders = [directs[1], directs[2]]
    bodies = [
        d.body(account.key, url, json.dumps(_inner(account, k, url)).encode(), kid=account.url)
        for d, k in zip(contenders, new_keys, strict=True)
    ]

    with db.holding(db.row_lock("acme_accounts", account.id)):
        threads = [Background(d.post, url, b) for d, b in zip(contenders, bodies, strict=True)]
        waiting = db.wait_blocked(2)
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert waiting == 2, f"only {waiting} key changes reached the compare-and-set"

    responses: list[httpx.Response] = []
    for thread in threads:
        assert thread.error is None, thread.error
        responses.append(thread.result)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], [(r.status_code, r.text) for r in responses]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    loser = responses[1 - winner]
    assert is_problem(loser, 409, "malformed"), loser.text  # RFC 8555 §7.3.5: 409 Conflict
    assert responses[winner].headers["Location"] == account.url

    # The account answers to the winner's key only, on every replica.
    for d in directs:
        ok = d.signed(new_keys[winner], account.url, None, kid=account.url)
        assert ok.status_code == 200, ok.text
        for refused in (new_keys[1 - winner], account.key):
            response = d.signed(refused, account.url, None, kid=account.url)
            assert is_problem(response, 403, "unauthorized"), response.text
    for d in directs:
        d.close()


def test_concurrent_gc_sweeps_expire_an_authorization_once(fleet: Fleet) -> None:
    """Every replica sweeps every second (CERTCTL_ACME_SERVER_GC_INTERVAL=1s). An expired
    authorization's row is locked until the sweeps of at least two replicas wait on it:
    it must still be expired once, with one audit event."""
    db = FleetDb(fleet.database_url)
    direct = Direct(fleet, 0)
    account = direct.new_account()
    for attempt in range(GC_RACE_ATTEMPTS):
        _, order = direct.ready_order(account, f"gc{attempt}.fleet.test")
        authz_id = order["authorizations"][0].rsplit("/", 1)[1]
        db.execute(
            "UPDATE acme_authorizations SET expires_at = now() - interval '1 second' WHERE id = %s",
            authz_id,
        )
        with db.holding(db.row_lock("acme_authorizations", authz_id)):
            if db.authz_status(authz_id) != "valid":
                continue  # a sweep came between the two statements above: again
            waiting = db.wait_blocked(2)
        break
    else:
        pytest.fail(f"a sweep always came first ({GC_RACE_ATTEMPTS} attempts)")
    assert waiting >= 2, f"only {waiting} sweeps waited on the authorization"
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while db.blocked_on_locks() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.authz_status(authz_id) == "expired"
    events = db.rows(
        "SELECT actor FROM audit_events WHERE action = 'acme_authz_expired' AND object_id = %s",
        authz_id,
    )
    assert len(events) == 1, events
    direct.close()
