"""ACME rate limits over real sockets: each limit trips at N+1 with 429, Retry-After and
rateLimited; overrides per account and per profile; ARI renewals are exempt; with Redis
the limits hold across replicas, and without a reachable Redis they still hold per process.

Client addresses: uvicorn trusts ``X-Forwarded-For`` from loopback peers, so every account
here is registered from an address of its own (``fresh_ip``) and the per-address limit of
one test never meets another's; the per-address test chooses its addresses.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.integration.cli import certctl_cli, create_profile
from tests.integration.servers import serve
from tests.integration.test_ari import cert_id, issue, own_database, serial_hex
from tests.integration.test_keychange import inner_jws, key_change, rollover_payload
from tests.integration.wire import Account, Key, Wire, assert_problem, csr_der, flattened
from tests.support import redis as redis_support
from tests.support.gating import require_or_skip
from tests.support.ports import free_port
from tests.support.server import ServedCertctl

LIMIT = "CERTCTL_ACME_SERVER_RATE_LIMIT_"
JOSE = "application/jose+json"
HOUR = 3600
OVERRIDE_CACHE_S = 2.2  # overrides reach a running server within 2 s


def fresh_ip() -> str:
    """A documentation address (RFC 5737 / RFC 3849) nobody else in the suite uses."""
    rng = random.SystemRandom()
    if rng.random() < 0.5:
        return f"198.51.{rng.randrange(100, 256)}.{rng.randrange(1, 255)}"
    return f"2001:db8:{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}::1"


def register(wire: Wire, key: Key | None = None, ip: str | None = None) -> httpx.Response:
    key = key or Key.ec256()
    header = wire.header(key, wire["newAccount"])
    body = flattened(key, header, json.dumps({"termsOfServiceAgreed": True}).encode())
    return wire.post(wire["newAccount"], body, headers={"X-Forwarded-For": ip or fresh_ip()})


def account(wire: Wire, key: Key | None = None) -> Account:
    key = key or Key.ec256()
    response = register(wire, key)
    assert response.status_code == 201, response.text
    return Account(key, response.headers["Location"])


def assert_limited(response: httpx.Response, wire: Wire, limit: str) -> int:
    """429 rateLimited naming ``limit``; returns Retry-After (whole seconds, at least 1)."""
    doc = assert_problem(response, 429, "rateLimited", wire.directory_url)
    assert limit in doc["detail"], doc
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def metric(wire: Wire, sample: str) -> float:
    """The value of one sample (``name{labels}``) of the server's /metrics, 0 if absent."""
    text = wire.http.get(f"{wire.served.base_url}/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def trips(wire: Wire, limit: str) -> float:
    return metric(wire, f'certctl_ratelimit_trips_total{{limit="{limit}"}}')


def order_n(wire: Wire, who: Account, n: int, name: str = "rl.example.test") -> list[int]:
    return [wire.new_order(who, f"{i}.{name}").status_code for i in range(n)]


# -- one server with small limits, shared by the module ---------------------------------------

SMALL = {
    LIMIT + "ORDERS_PER_HOUR": "3",
    LIMIT + "CONCURRENT_ORDERS": "0",
    LIMIT + "KEY_CHANGE_PER_HOUR": "2",
    LIMIT + "CHALLENGE_RESPONDS_PER_HOUR": "2",
    LIMIT + "NEW_ACCOUNTS_PER_IP_PER_HOUR": "2",
}


@pytest.fixture(scope="module")
def limited(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    with serve(request, tmp_path_factory, database_url, env=SMALL) as server:
        yield server


@pytest.fixture(scope="module")
def wire(limited: ServedCertctl) -> Iterator[Wire]:
    client = Wire(limited)
    yield client
    client.close()


def test_orders_per_hour_trips_at_n_plus_one(wire: Wire) -> None:
    before = trips(wire, "orders_per_hour")
    who = account(wire)
    assert order_n(wire, who, 3) == [201, 201, 201]
    refused = wire.new_order(who, "4.rl.example.test")
    # 3 per hour: the next fits 20 minutes after the first.
    assert HOUR / 3 - 60 <= assert_limited(refused, wire, "orders_per_hour") <= HOUR / 3
    # Another account is not affected; the metric counted the trip.
    assert wire.new_order(account(wire), "x.rl.example.test").status_code == 201
    assert trips(wire, "orders_per_hour") == before + 1


def test_refused_orders_are_not_counted(wire: Wire) -> None:
    who = account(wire)
    for _ in range(4):  # malformed: refused before any limit is consulted
        bad = wire.new_order(who, "-bad-.example.test")
        assert bad.status_code == 400, bad.text
    assert order_n(wire, who, 3) == [201, 201, 201]


def test_a_replayed_new_order_takes_no_allowance(wire: Wire) -> None:
    """newOrder spends its nonce before it takes an hourly allowance: a replay is refused
    as badNonce and counts against nothing."""
    who = account(wire)
    payload = {"identifiers": [{"type": "dns", "value": "0.replay.rl.example.test"}]}
    header = wire.header(who.key, wire["newOrder"], kid=who.url)
    body = flattened(who.key, header, json.dumps(payload).encode())
    assert wire.post(wire["newOrder"], body).status_code == 201
    assert_problem(wire.post(wire["newOrder"], body), 400, "badNonce", wire.directory_url)
    assert order_n(wire, who, 2, "replay.rl.example.test") == [201, 201]
    assert_limited(wire.new_order(who, "9.replay.rl.example.test"), wire, "orders_per_hour")


def test_key_change_per_hour(wire: Wire) -> None:
    who = account(wire)
    for _ in range(2):
        new_key = Key.ec256()
        inner = inner_jws(new_key, wire["keyChange"], rollover_payload(who))
        assert key_change(wire, who, inner).status_code == 200
        who = Account(new_key, who.url)
    inner = inner_jws(Key.ec256(), wire["keyChange"], rollover_payload(who))
    assert_limited(key_change(wire, who, inner), wire, "key_change_per_hour")
    # The refused rollover changed nothing: the current key still works.
    assert wire.as_account(who, who.url).status_code == 200


def test_new_accounts_per_ip_and_per_ipv6_64(wire: Wire) -> None:
    v4 = f"203.0.113.{random.SystemRandom().randrange(1, 255)}"
    keys = [Key.ec256() for _ in range(3)]
    assert [register(wire, k, v4).status_code for k in keys[:2]] == [201, 201]
    assert_limited(register(wire, keys[2], v4), wire, "new_accounts_per_ip_per_hour")
    # An existing key's account is returned, never refused and never counted.
    assert register(wire, keys[0], v4).status_code == 200
    # IPv6 by /64: two hosts of one /64 share the allowance, the next /64 has its own.
    net = f"2001:db8:{random.SystemRandom().randrange(1 << 16):x}:1"
    assert register(wire, None, f"{net}::1").status_code == 201
    assert register(wire, None, f"{net}:ffff::2").status_code == 201
    assert_limited(register(wire, None, f"{net}::3"), wire, "new_accounts_per_ip_per_hour")
    assert register(wire, None, net[:-1] + "2::1").status_code == 201


def test_challenge_responds_per_challenge(wire: Wire, limited: ServedCertctl) -> None:
    create_profile(limited, "chal-rl", "--acme-auth-mode", "challenge")
    chal = Wire(limited, "/acme/profile/chal-rl/directory")
    try:
        who = account(chal)
        created = chal.new_order(who, "chal.rl.example.test")
        assert created.status_code == 201, created.text
        authz = chal.as_account(who, created.json()["authorizations"][0]).json()
        url = authz["challenges"][0]["url"]
        assert chal.as_account(who, url, {}).status_code == 200  # starts validation
        for _ in range(3):  # POST-as-GET reads are not responses
            assert chal.as_account(who, url).status_code == 200
        assert chal.as_account(who, url, {}).status_code == 200  # a no-op, but counted
        assert_limited(chal.as_account(who, url, {}), chal, "challenge_responds_per_hour")
        other = authz["challenges"][1]["url"]  # each challenge has its own allowance
        assert chal.as_account(who, other, {}).status_code == 200
    finally:
        chal.close()


def test_account_override_raises_and_profile_override_lowers(
    wire: Wire, limited: ServedCertctl
) -> None:
    raised = account(wire)
    certctl_cli(
        limited, "ratelimit", "set", "--account", raised.id, "--limit", "orders_per_hour",
        "--value", "5",
    )  # fmt: skip
    create_profile(limited, "tight-rl")
    certctl_cli(
        limited, "ratelimit", "set", "--profile", "tight-rl", "--limit", "orders_per_hour",
        "--value", "1",
    )  # fmt: skip
    listed = certctl_cli(limited, "ratelimit", "list")
    assert raised.id in listed and "tight-rl" in listed
    time.sleep(OVERRIDE_CACHE_S)
    assert order_n(wire, raised, 5) == [201] * 5
    assert_limited(wire.new_order(raised, "6.rl.example.test"), wire, "orders_per_hour")
    tight = Wire(limited, "/acme/profile/tight-rl/directory")
    try:
        who = account(tight)
        assert tight.new_order(who, "a.tight.example.test").status_code == 201
        refused = tight.new_order(who, "b.tight.example.test")
        wait = assert_limited(refused, tight, "orders_per_hour")
        assert HOUR - 60 <= wait <= HOUR
    finally:
        tight.close()
    # Deleted: the server-wide value applies again (3 per hour; 1 used).
    certctl_cli(
        limited, "ratelimit", "delete", "--profile", "tight-rl", "--limit", "orders_per_hour"
    )
    time.sleep(OVERRIDE_CACHE_S)
    tight = Wire(limited, "/acme/profile/tight-rl/directory")
    try:
        later = account(tight)
        assert order_n(tight, later, 4, "tight.example.test") == [201, 201, 201, 429]
    finally:
        tight.close()


def test_a_renewal_inside_its_ari_window_is_exempt(wire: Wire, limited: ServedCertctl) -> None:
    who = account(wire)
    cert: x509.Certificate = issue(wire, who, "renew.rl.example.test")
    assert order_n(wire, who, 2) == [201, 201]  # 3 of 3 used
    early = wire.new_order(who, "renew.rl.example.test", replaces=cert_id(cert))
    assert_limited(early, wire, "orders_per_hour")  # not yet in its window: counted
    certctl_cli(limited, "ari", "shift", "--serial", serial_hex(cert), "--end", "now")
    renewal = wire.new_order(who, "renew.rl.example.test", replaces=cert_id(cert))
    assert renewal.status_code == 201, renewal.text
    # The exemption spent nothing, and covers only that renewal.
    assert_limited(wire.new_order(who, "plain.rl.example.test"), wire, "orders_per_hour")


# -- concurrent orders: a server of its own ---------------------------------------------------


@pytest.fixture(scope="module")
def open_wire(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[Wire]:
    env = {LIMIT + "CONCURRENT_ORDERS": "2", LIMIT + "ORDERS_PER_HOUR": "0"}
    # A second instance, so a database of its own (its CA signs for its own profiles).
    with (
        own_database(database_url) as url,
        serve(request, tmp_path_factory, url, env=env) as server,
    ):
        client = Wire(server)
        yield client
        client.close()


def test_concurrent_orders(open_wire: Wire) -> None:
    wire = open_wire
    who = account(wire)
    first, _ = wire.ready_order(who, "c1.rl.example.test")
    wire.ready_order(who, "c2.rl.example.test")
    refused = wire.new_order(who, "c3.rl.example.test")
    # Retry-After: when the earliest open order expires (24 h order lifetime).
    assert 24 * HOUR - 120 <= assert_limited(refused, wire, "concurrent_orders") <= 24 * HOUR
    # Finishing an order frees its place at once.
    order = wire.as_account(who, first).json()
    cert_key = Key.ec256()
    done = wire.finalize(who, order, csr_der(cert_key, ["c1.rl.example.test"]))
    assert done.status_code == 200, done.text
    assert wire.new_order(who, "c3.rl.example.test").status_code == 201
    assert wire.new_order(who, "c4.rl.example.test").status_code == 429


def test_a_replayed_new_order_trips_no_limit(open_wire: Wire) -> None:
    """The nonce is spent before any limit is consulted: a replay at the open-orders cap
    is badNonce and the trip metric does not count it."""
    wire = open_wire
    who = account(wire)
    payload = {"identifiers": [{"type": "dns", "value": "r1.rl.example.test"}]}
    header = wire.header(who.key, wire["newOrder"], kid=who.url)
    body = flattened(who.key, header, json.dumps(payload).encode())
    assert wire.post(wire["newOrder"], body).status_code == 201
    wire.ready_order(who, "r2.rl.example.test")  # the account is at its cap of 2 now
    before = trips(wire, "concurrent_orders")
    assert_problem(wire.post(wire["newOrder"], body), 400, "badNonce", wire.directory_url)
    assert trips(wire, "concurrent_orders") == before


def test_concurrent_new_orders_cannot_overshoot(open_wire: Wire) -> None:
    wire = open_wire
    who = account(wire)
    clients = [wire.new_http() for _ in range(8)]
    nonces = [wire.nonce() for _ in clients]

    def post(i: int) -> int:
        header = wire.header(who.key, wire["newOrder"], kid=who.url, nonce=nonces[i])
        payload = {"identifiers": [{"type": "dns", "value": f"p{i}.rl.example.test"}]}
        body = flattened(who.key, header, json.dumps(payload).encode())
        response = clients[i].post(
            wire["newOrder"], content=json.dumps(body), headers={"Content-Type": JOSE}
        )
        return response.status_code

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            codes = sorted(pool.map(post, range(len(clients))))
    finally:
        for client in clients:
            client.close()
    assert codes == [201, 201] + [429] * 6


# -- a fleet: two replicas on one PostgreSQL database and one Redis -----------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Database 15 of the test Redis; skips locally, fails in CI when unreachable."""
    reason = redis_support.unavailable_reason()
    require_or_skip(reason is None, f"{reason} (set {redis_support.REDIS_URL_ENV})")
    yield redis_support.redis_url()


def _replicas(workdir: Path, database_url: str, env: dict[str, str]) -> list[ServedCertctl]:
    # One data directory (one CA) for both, as replicas of one deployment.
    return [ServedCertctl(workdir, database_url, env=env) for _ in range(2)]


def test_with_redis_the_limit_is_global_not_per_replica(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "CERTCTL_REDIS_URL": redis_url,
        LIMIT + "ORDERS_PER_HOUR": "4",
        LIMIT + "CONCURRENT_ORDERS": "0",
    }
    replicas = _replicas(tmp_path / "fleet", postgres_url, env)
    key = Key.ec256()
    wires: list[Wire] = []
    account_id = ""
    try:
        for replica in replicas:
            replica.start()
            wires.append(Wire(replica))
        # The same key on each replica: one account, known by each replica's own URL.
        a = account(wires[0], key)
        account_id = a.id
        again = register(wires[1], key)
        assert again.status_code == 200, again.text
        b = Account(key, again.headers["Location"])
        assert b.id == a.id
        # 4 orders split across the replicas; the 5th is refused wherever it lands.
        codes = [
            wires[i % 2].new_order((a, b)[i % 2], f"{i}.fleet.example.test").status_code
            for i in range(4)
        ]
        assert codes == [201] * 4
        assert_limited(wires[0].new_order(a, "x.fleet.example.test"), wires[0], "orders_per")
        assert_limited(wires[1].new_order(b, "y.fleet.example.test"), wires[1], "orders_per")
        assert trips(wires[0], "orders_per_hour") == 1
        assert trips(wires[1], "orders_per_hour") == 1
    finally:
        for w in wires:
            w.close()
        for replica in replicas:
            replica.stop()
        if account_id:
            redis_support.delete_matching(f"certctl:rl:*{account_id}", redis_url)
    assert "rate-limit store unavailable" not in (tmp_path / "fleet" / "server.log").read_text()


def test_without_a_reachable_redis_acme_works_and_limits_hold_locally(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    closed = free_port("127.0.0.1")  # nothing listens there
    env = {
        "CERTCTL_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        LIMIT + "ORDERS_PER_HOUR": "2",
    }
    with serve(request, tmp_path_factory, None, env=env) as server:
        wire = Wire(server)
        try:
            who = account(wire)
            assert order_n(wire, who, 2) == [201, 201]
            assert_limited(wire.new_order(who, "z.rl.example.test"), wire, "orders_per_hour")
            _, order, _ = wire.issue(account(wire), "down.rl.example.test")
            assert order["status"] == "valid"
            assert metric(wire, "certctl_ratelimit_store_errors_total") >= 1
            assert trips(wire, "orders_per_hour") == 1
        finally:
            wire.close()
        log = server.log_path.read_text()
    # One warning for the outage, however many requests it covered.
    assert log.count("rate-limit store unavailable") == 1, log[-3000:]
