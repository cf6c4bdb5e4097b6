"""Challenge mode over the wire (RFC 8555 §7.5.1, §8; RFC 8659 CAA).

The served instances validate for real: names resolve through pebble-challtestsrv (every A
query answers 127.0.0.1 unless a test adds records; it also serves the CAA records), and
http-01 is answered by ``Responder``, a small HTTP server in this process that serves
``/.well-known/acme-challenge/<token>``, counts the requests per token and can hold one
back, so a test sees the server while a validation is provably in flight.

Each instance here gets a database of its own (a fresh PostgreSQL database on the postgres
run): instances sharing one would recover each other's stale validations.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.integration.cli import certctl_cli, count_rows, create_profile
from tests.integration.servers import serve
from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_problem,
    b64,
    csr_der,
    flattened,
    payload_bytes,
)
from tests.support.challtestsrv import ChallTestSrv, challtestsrv_executable
from tests.support.ports import free_port
from tests.support.postgres import fresh_database
from tests.support.server import ServedCertctl

URN = "urn:ietf:params:acme:error:"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
CA_IDENTITY = "certctl.test"
# How long a test waits for a validation the server should decide within a second or two.
DECIDE_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1
HOLD_TIMEOUT_S = 60.0

# Profiles created on the main instance.
CHAL = "chal"
CHAL_POLICY = "chal-policy"
TRUST_POLICY = "trust-policy"
CHAL_CAA = "chal-caa"
TRUST_CAA = "trust-caa"
SWITCH = "switch"
CHAL_IP = "chal-ip"
DEFAULT = "default"  # trust_authenticated, given --caa-check; reached through /acme/...
# On the main instance: CAA is checked again at finalize once a validation is this old.
CAA_RECHECK_AFTER_S = 1


def unique(label: str) -> str:
    """A name of its own under example.test: instances share one DNS server."""
    return f"{label}-{uuid.uuid4().hex[:10]}.example.test"


def thumbprint(key: Key) -> str:
    """RFC 7638 JWK thumbprint: required members, sorted, no whitespace, SHA-256."""
    canonical = json.dumps(key.jwk, sort_keys=True, separators=(",", ":")).encode()
    return b64(hashlib.sha256(canonical).digest())


def key_authorization(token: str, key: Key) -> str:
    """RFC 8555 §8.1."""
    return f"{token}.{thumbprint(key)}"


# -- the http-01 responder ---------------------------------------------------------------------


@dataclass
class Hold:
    """Holds back the answer to the first request for a token until released."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    used: bool = False


class Responder:
    """http-01 answers by token, request counts by token, optional holds."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        self.holds: dict[str, Hold] = {}
        self.lock = threading.Lock()
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the counts are what tests look at

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.lock:
            for hold in self.holds.values():
                hold.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, token: str, content: str) -> None:
        with self.lock:
            self.answers[token] = content

    def hold(self, token: str) -> Hold:
        with self.lock:
            hold = self.holds[token] = Hold()
        return hold

    def count(self, token: str) -> int:
        with self.lock:
            return self.hits[token]

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        token = request.path.removeprefix(CHALLENGE_PATH)
        with self.lock:
            self.hits[token] += 1
            answer = self.answers.get(token) if request.path.startswith(CHALLENGE_PATH) else None
            hold = self.holds.get(token)
            held = hold is not None and not hold.used
            if hold is not None:
                hold.used = True
        if held:
            assert hold is not None
            hold.arrived.set()
            hold.release.wait(HOLD_TIMEOUT_S)
        body = (answer or "not found").encode()
        with contextlib.suppress(OSError):  # the validating server may be gone (killed)
            request.send_response(200 if answer is not None else 404)
            request.send_header("Content-Type", "text/plain")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    executable = challtestsrv_executable()
    with ChallTestSrv(tmp_path_factory.mktemp("challtestsrv"), executable) as server:
        yield server


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    server = Responder()
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def own_database(database_url: str | None) -> Iterator[str | None]:
    """SQLite stays per data dir; on PostgreSQL each instance gets a fresh database."""
    if database_url is None:
        yield None
        return
    with fresh_database() as url:
        yield url


def validation_env(dns: ChallTestSrv, responder: Responder, **overrides: str) -> dict[str, str]:
    env = {
        "CERTCTL_ACME_SERVER_DNS01_RESOLVER": dns.resolver,
        "CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK": "true",
        "CERTCTL_ACME_SERVER_VALIDATION_HTTP_PORT": str(responder.port),
        "CERTCTL_ACME_SERVER_VALIDATION_TLS_PORT": str(free_port()),
        "CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT": "5s",
        "CERTCTL_ACME_SERVER_CAA_IDENTITIES": CA_IDENTITY,
    }
    env.update(overrides)
    return env


@contextlib.contextmanager
def challenge_instance(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    env: Mapping[str, str],
) -> Iterator[ServedCertctl]:
    """An instance with a database of its own and the ``chal`` profile (challenge mode)."""
    with own_database(database_url) as url, serve(request, tmp_path_factory, url, env) as server:
        create_profile(server, CHAL, "--acme-auth-mode", "challenge")
        yield server


@dataclass
class Instance:
    served: ServedCertctl
    wires: dict[str, Wire]

    def __getitem__(self, profile: str) -> Wire:
        return self.wires[profile]


def open_wires(served: ServedCertctl, *profiles: str) -> dict[str, Wire]:
    return {p: Wire(served, f"/acme/profile/{p}/directory") for p in profiles}


@pytest.fixture(scope="module")
def main(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    challtestsrv: ChallTestSrv,
    responder: Responder,
) -> Iterator[Instance]:
    """Loopback allowed, authorization reuse on (the default), CAA identity certctl.test."""
    env = validation_env(
        challtestsrv,
        responder,
        CERTCTL_ACME_SERVER_CAA_RECHECK_AFTER=f"{CAA_RECHECK_AFTER_S}s",
    )
    with challenge_instance(request, tmp_path_factory, database_url, env) as served:
        policy = ("--allowed-names", "example.test")
        create_profile(served, CHAL_POLICY, "--acme-auth-mode", "challenge", *policy)
        create_profile(served, TRUST_POLICY, "--acme-auth-mode", "trust_authenticated", *policy)
        create_profile(served, CHAL_CAA, "--acme-auth-mode", "challenge", "--caa-check")
        create_profile(served, TRUST_CAA, "--acme-auth-mode", "trust_authenticated", "--caa-check")
        create_profile(served, SWITCH, "--acme-auth-mode", "trust_authenticated")
        create_profile(served, CHAL_IP, "--acme-auth-mode", "challenge", "--allow-ip")
        certctl_cli(served, "profile", "update", "default", "--caa-check")
        wires = open_wires(
            served, CHAL, CHAL_POLICY, TRUST_POLICY, CHAL_CAA, TRUST_CAA, CHAL_IP, SWITCH
        )
        wires[DEFAULT] = Wire(served)  # the /acme/... shorthand family
        yield Instance(served, wires)
        for wire in wires.values():
            wire.close()


@pytest.fixture(scope="module")
def no_reuse(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    challtestsrv: ChallTestSrv,
    responder: Responder,
) -> Iterator[Wire]:
    env = validation_env(challtestsrv, responder, CERTCTL_ACME_SERVER_AUTHZ_REUSE="false")
    with challenge_instance(request, tmp_path_factory, database_url, env) as served:
        wire = Wire(served, f"/acme/profile/{CHAL}/directory")
        yield wire
        wire.close()


@pytest.fixture(scope="module")
def loopback_refused(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    challtestsrv: ChallTestSrv,
    responder: Responder,
) -> Iterator[Wire]:
    """CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK unset: the default."""
    env = validation_env(challtestsrv, responder)
    del env["CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK"]
    with challenge_instance(request, tmp_path_factory, database_url, env) as served:
        wire = Wire(served, f"/acme/profile/{CHAL}/directory")
        yield wire
        wire.close()


# -- ACME helpers ---------------------------------------------------------------------------------


def read(wire: Wire, account: Account, url: str) -> dict[str, Any]:
    """POST-as-GET ``url`` and return the resource."""
    response = wire.as_account(account, url)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def order_for(wire: Wire, account: Account, *names: str) -> tuple[str, dict[str, Any]]:
    response = wire.new_order(account, *names)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return response.headers["Location"], order


def authzs(wire: Wire, account: Account, order: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [read(wire, account, url) for url in order["authorizations"]]


def challenge(authz: Mapping[str, Any], kind: str = "http-01") -> dict[str, Any]:
    (found,) = [c for c in authz["challenges"] if c["type"] == kind]
    result: dict[str, Any] = found
    return result


def respond(wire: Wire, account: Account, challenge_url: str) -> httpx.Response:
    """The client's challenge response: POST ``{}`` (RFC 8555 §7.5.1)."""
    response = wire.as_account(account, challenge_url, {})
    assert response.status_code == 200, response.text
    return response


def poll(
    wire: Wire, account: Account, url: str, *, until: tuple[str, ...] = ("valid", "invalid")
) -> dict[str, Any]:
    """POST-as-GET ``url`` until its status is in ``until``; fail after DECIDE_TIMEOUT_S."""
    deadline = time.monotonic() + DECIDE_TIMEOUT_S
    while True:
        doc = read(wire, account, url)
        if doc["status"] in until:
            return doc
        assert time.monotonic() < deadline, f"{url} still {doc['status']}: {doc}"
        time.sleep(POLL_INTERVAL_S)


def prove_http01(
    wire: Wire, responder: Responder, account: Account, authz_url: str, *, key: Key | None = None
) -> dict[str, Any]:
    """Publish the key authorization (of ``key``, default the account's), respond to the
    http-01 challenge and return the decided authorization."""
    chall = challenge(read(wire, account, authz_url))
    responder.serve(chall["token"], key_authorization(chall["token"], key or account.key))
    respond(wire, account, chall["url"])
    return poll(wire, account, authz_url)


def validated_order(
    wire: Wire, responder: Responder, account: Account, *names: str
) -> tuple[str, dict[str, Any]]:
    """A new order for ``names`` with every authorization proven by http-01: ready."""
    order_url, order = order_for(wire, account, *names)
    for url in order["authorizations"]:
        assert prove_http01(wire, responder, account, url)["status"] == "valid"
    ready = read(wire, account, order_url)
    assert ready["status"] == "ready", ready
    return order_url, ready


def finalize(
    wire: Wire, account: Account, order: Mapping[str, Any], *names: str
) -> x509.Certificate:
    response = wire.finalize(account, order, csr_der(Key.ec256(), list(names)))
    assert response.status_code == 200, response.text
    valid = response.json()
    assert valid["status"] == "valid", valid
    chain = wire.as_account(account, valid["certificate"]).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    return leaf


def audit_count(served: ServedCertctl, action: str, object_id: str) -> int:
    return count_rows(
        served,
        "SELECT count(*) FROM audit_events WHERE action = :action AND object_id = :object_id",
        action=action,
        object_id=object_id,
    )


def last_segment(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- the challenge flow -------------------------------------------------------------------------


def test_challenge_post_answers_processing_at_once_then_authz_valid_order_ready_and_issues(
    main: Instance, responder: Responder
) -> None:
    wire = main[CHAL]
    account = wire.new_account()
    name = unique("flow")
    order_url, order = order_for(wire, account, name)
    assert order["status"] == "pending", order
    (authz_url,) = order["authorizations"]
    authz = read(wire, account, authz_url)
    assert authz["status"] == "pending"
    assert sorted(c["type"] for c in authz["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]
    assert {c["status"] for c in authz["challenges"]} == {"pending"}

    chall = challenge(authz)
    responder.serve(chall["token"], key_authorization(chall["token"], account.key))
    hold = responder.hold(chall["token"])
    started = time.monotonic()
    response = respond(wire, account, chall["url"])
    # Answered before the validation could finish: the responder is still holding it.
    assert not hold.release.is_set()
    assert response.json()["status"] == "processing", response.text
    assert response.headers["Retry-After"].isdigit(), response.headers
    assert int(response.headers["Retry-After"]) >= 1
    assert f'<{authz_url}>;rel="up"' in response.headers.get_list("Link", split_commas=True)

    assert hold.arrived.wait(DECIDE_TIMEOUT_S), "the validation never reached the responder"
    in_flight = wire.as_account(account, authz_url)
    assert in_flight.json()["status"] == "pending"
    assert challenge(in_flight.json())["status"] == "processing"
    assert in_flight.headers["Retry-After"].isdigit()
    assert read(wire, account, order_url)["status"] == "pending"
    hold.release.set()

    decided = poll(wire, account, authz_url)
    assert decided["status"] == "valid", decided
    http01 = challenge(decided)
    assert http01["status"] == "valid" and "validated" in http01 and "error" not in http01
    assert time.monotonic() - started < DECIDE_TIMEOUT_S
    ready = read(wire, account, order_url)
    assert ready["status"] == "ready", ready
    finalize(wire, account, ready, name)
    assert responder.count(chall["token"]) == 1


def test_a_post_as_get_of_a_challenge_reads_it_and_starts_nothing(
    main: Instance, responder: Responder
) -> None:
    """RFC 8555 §6.3 and §7.5.1: only a POST of ``{}`` says the client is ready. A read
    before the answer is in place must leave the challenge pending, not fail it."""
    wire = main[CHAL]
    account = wire.new_account()
    name = unique("peek")
    order_url, order = order_for(wire, account, name)
    (authz_url,) = order["authorizations"]
    chall = challenge(read(wire, account, authz_url))

    for _ in range(2):
        peeked = read(wire, account, chall["url"])
        assert peeked["status"] == "pending", peeked
    assert (
        audit_count(main.served, "acme_challenge_processing", chall["url"].rsplit("/", 1)[1]) == 0
    )
    assert read(wire, account, authz_url)["status"] == "pending"
    assert responder.count(chall["token"]) == 0

    # The answer in place, the response validates as ever.
    responder.serve(chall["token"], key_authorization(chall["token"], account.key))
    assert respond(wire, account, chall["url"]).json()["status"] in {"processing", "valid"}
    assert poll(wire, account, authz_url)["status"] == "valid"
    assert read(wire, account, order_url)["status"] == "ready"


def test_concurrent_challenge_posts_start_exactly_one_validation(
    main: Instance, responder: Responder
) -> None:
    wire = main[CHAL]
    account = wire.new_account()
    _, order = order_for(wire, account, unique("race"))
    (authz_url,) = order["authorizations"]
    chall = challenge(read(wire, account, authz_url))
    responder.serve(chall["token"], key_authorization(chall["token"], account.key))
    hold = responder.hold(chall["token"])  # keep it processing while the POSTs land

    posts = 10
    bodies = [
        flattened(
            account.key,
            wire.header(account.key, chall["url"], kid=account.url),
            payload_bytes({}),
        )
        for _ in range(posts)
    ]
    barrier = threading.Barrier(posts)

    def post(body: dict[str, str]) -> httpx.Response:
        with wire.new_http() as http:
            http.get(wire.directory_url)  # connect before the barrier
            barrier.wait()
            return http.post(
                chall["url"],
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/jose+json"},
            )

    with ThreadPoolExecutor(posts) as pool:
        responses = list(pool.map(post, bodies))
    try:
        assert [r.status_code for r in responses] == [200] * posts, [r.text for r in responses]
        assert {r.json()["status"] for r in responses} == {"processing"}
    finally:
        hold.release.set()
    assert poll(wire, account, authz_url)["status"] == "valid"
    time.sleep(0.5)  # a second validation, had one started, would have arrived by now
    assert responder.count(chall["token"]) == 1
    challenge_id = last_segment(chall["url"])
    assert audit_count(main.served, "acme_challenge_processing", challenge_id) == 1
    assert audit_count(main.served, "acme_challenge_completed", challenge_id) == 1


def test_key_authorization_of_another_key_makes_challenge_authz_and_order_invalid(
    main: Instance, responder: Responder
) -> None:
    wire = main[CHAL]
    account, other = wire.new_account(), wire.new_account()
    name = unique("wrongkey")
    order_url, order = order_for(wire, account, name)
    (authz_url,) = order["authorizations"]

    authz = prove_http01(wire, responder, account, authz_url, key=other.key)
    assert authz["status"] == "invalid", authz
    http01 = challenge(authz)
    assert http01["status"] == "invalid"
    assert http01["error"]["type"] in (URN + "incorrectResponse", URN + "unauthorized"), http01
    assert "validated" not in http01
    # The other challenges were never attempted and stay pending (RFC 8555 §7.1.6).
    assert {c["status"] for c in authz["challenges"] if c["type"] != "http-01"} == {"pending"}
    assert read(wire, account, order_url)["status"] == "invalid"
    # Responding again to an invalid challenge changes nothing and starts nothing.
    hits = responder.count(http01["token"])
    again = respond(wire, account, http01["url"])
    assert again.json()["status"] == "invalid"
    assert "Retry-After" not in again.headers
    time.sleep(0.3)
    assert responder.count(http01["token"]) == hits

    # An invalid authorization is never reused: the next order starts from scratch...
    _, retry = order_for(wire, account, name)
    assert retry["status"] == "pending", retry
    (retry_authz_url,) = retry["authorizations"]
    assert retry_authz_url != authz_url
    fresh = read(wire, account, retry_authz_url)
    assert fresh["status"] == "pending"
    assert challenge(fresh)["token"] != http01["token"]
    # ... and can still be proven with the right key.
    assert prove_http01(wire, responder, account, retry_authz_url)["status"] == "valid"


# -- authorization reuse --------------------------------------------------------------------------


def test_valid_authz_is_reused_by_the_same_account_only(
    main: Instance, responder: Responder
) -> None:
    wire = main[CHAL]
    account, stranger = wire.new_account(), wire.new_account()
    name = unique("reuse")
    _, first = validated_order(wire, responder, account, name)

    order_url, again = order_for(wire, account, name)
    assert again["status"] == "ready", again
    (reused_url,) = again["authorizations"]
    assert reused_url not in first["authorizations"]  # a copy with its own URL
    reused = read(wire, account, reused_url)
    assert reused["status"] == "valid"
    assert [c["status"] for c in reused["challenges"]] == ["valid"]
    finalize(wire, account, again, name)
    assert read(wire, account, order_url)["status"] == "valid"

    # Never across accounts.
    _, theirs = order_for(wire, stranger, name)
    assert theirs["status"] == "pending", theirs
    assert read(wire, stranger, theirs["authorizations"][0])["status"] == "pending"

    # A multi-name order reuses what it can and asks for the rest.
    other_name = unique("reuse-more")
    _, mixed = order_for(wire, account, name, other_name)
    assert mixed["status"] == "pending"
    statuses = {a["identifier"]["value"]: a["status"] for a in authzs(wire, account, mixed)}
    assert statuses == {name: "valid", other_name: "pending"}


def test_authz_reuse_off_reuses_nothing(no_reuse: Wire, responder: Responder) -> None:
    wire = no_reuse
    account = wire.new_account()
    name = unique("noreuse")
    validated_order(wire, responder, account, name)
    _, again = order_for(wire, account, name)
    assert again["status"] == "pending", again
    assert read(wire, account, again["authorizations"][0])["status"] == "pending"


# -- identifier policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [CHAL_POLICY, TRUST_POLICY])
def test_policy_refuses_a_name_outside_it(main: Instance, profile: str) -> None:
    wire = main[profile]
    account = wire.new_account()
    response = wire.new_order(account, "evil-example.test")
    doc = assert_problem(response, 400, "rejectedIdentifier", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [
        {"type": "dns", "value": "evil-example.test"}
    ]
    # The policy itself lets its own names through.
    _, order = order_for(wire, account, "ok.example.test")
    expected = "ready" if profile == TRUST_POLICY else "pending"
    assert order["status"] == expected


@pytest.mark.parametrize("outside", ["evil-example.test", "example.test.evil.test"])
@pytest.mark.parametrize("profile", [CHAL_POLICY, TRUST_POLICY])
def test_policy_refuses_only_the_last_name_of_an_order(
    main: Instance, profile: str, outside: str
) -> None:
    wire = main[profile]
    account = wire.new_account()
    names = ["a.example.test", "b.sub.example.test", "example.test", outside]
    response = wire.new_order(account, *names)
    doc = assert_problem(response, 400, "rejectedIdentifier", wire.directory_url)
    assert len(doc["subproblems"]) == 1, doc
    (sub,) = doc["subproblems"]
    assert sub["identifier"] == {"type": "dns", "value": names[-1]}
    assert sub["type"] == URN + "rejectedIdentifier"
    # Nothing was created for the refused order.
    orders_url = read(wire, account, account.url)["orders"]
    assert read(wire, account, orders_url)["orders"] == []


# -- CAA ------------------------------------------------------------------------------------------


def test_caa_naming_another_ca_makes_the_authz_invalid(
    main: Instance, responder: Responder, challtestsrv: ChallTestSrv
) -> None:
    wire = main[CHAL_CAA]
    account = wire.new_account()
    name = unique("caa-other")
    challtestsrv.add_caa(name, [("issue", "other.test")])
    order_url, order = order_for(wire, account, name)
    authz = prove_http01(wire, responder, account, order["authorizations"][0])
    assert authz["status"] == "invalid", authz
    http01 = challenge(authz)
    assert http01["status"] == "invalid"
    assert http01["error"]["type"] == URN + "caa", http01
    assert read(wire, account, order_url)["status"] == "invalid"
    # The http-01 proof itself had been fetched: it is CAA that refused.
    assert responder.count(http01["token"]) == 1


def test_caa_naming_this_ca_validates_and_issues(
    main: Instance, responder: Responder, challtestsrv: ChallTestSrv
) -> None:
    wire = main[CHAL_CAA]
    account = wire.new_account()
    name = unique("caa-ours")
    challtestsrv.add_caa(name, [("issue", CA_IDENTITY)])
    _, ready = validated_order(wire, responder, account, name)
    finalize(wire, account, ready, name)


def test_caa_forbidding_only_the_last_name_fails_that_name_only(
    main: Instance, responder: Responder, challtestsrv: ChallTestSrv
) -> None:
    wire = main[CHAL_CAA]
    account = wire.new_account()
    no_caa, ours, forbidden = unique("caa-none"), unique("caa-ours"), unique("caa-other")
    challtestsrv.add_caa(ours, [("issue", CA_IDENTITY)])
    challtestsrv.add_caa(forbidden, [("issue", "other.test")])
    order_url, order = order_for(wire, account, no_caa, ours, forbidden)

    by_name: dict[str, dict[str, Any]] = {}
    for url in order["authorizations"]:
        authz = read(wire, account, url)
        chall = challenge(authz)
        responder.serve(chall["token"], key_authorization(chall["token"], account.key))
        respond(wire, account, chall["url"])
        by_name[authz["identifier"]["value"]] = {"url": url}
    for name, entry in by_name.items():
        entry["authz"] = poll(wire, account, entry["url"])
        assert entry["authz"]["identifier"]["value"] == name

    assert {n: e["authz"]["status"] for n, e in by_name.items()} == {
        no_caa: "valid",
        ours: "valid",
        forbidden: "invalid",
    }
    errors = {n: challenge(e["authz"]).get("error") for n, e in by_name.items()}
    assert errors[no_caa] is None and errors[ours] is None
    refused = errors[forbidden]
    assert refused is not None and refused["type"] == URN + "caa", refused
    assert read(wire, account, order_url)["status"] == "invalid"


def test_caa_checked_at_finalize_in_trust_mode_refuses_only_the_forbidden_name(
    main: Instance, challtestsrv: ChallTestSrv
) -> None:
    """trust_authenticated validates nothing, so finalize checks CAA for every name."""
    wire = main[TRUST_CAA]
    account = wire.new_account()
    ours, forbidden = unique("trust-caa-ours"), unique("trust-caa-other")
    challtestsrv.add_caa(ours, [("issue", CA_IDENTITY)])
    challtestsrv.add_caa(forbidden, [("issue", "other.test")])
    _, order = wire.ready_order(account, ours, forbidden)
    response = wire.finalize(account, order, csr_der(Key.ec256(), [ours, forbidden]))
    doc = assert_problem(response, 403, "caa", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [{"type": "dns", "value": forbidden}]
    # Without the forbidden name the same account gets its certificate.
    _, alone = wire.ready_order(account, ours)
    finalize(wire, account, alone, ours)


def test_caa_is_checked_again_at_finalize_once_the_validation_is_stale(
    main: Instance, responder: Responder, challtestsrv: ChallTestSrv
) -> None:
    """CAA changed after validation: with CERTCTL_ACME_SERVER_CAA_RECHECK_AFTER passed,
    finalize looks again and refuses only the name whose CAA now forbids us."""
    wire = main[CHAL_CAA]
    account = wire.new_account()
    stays, turns = unique("caa-stays"), unique("caa-turns")
    order_url, ready = validated_order(wire, responder, account, stays, turns)
    challtestsrv.add_caa(turns, [("issue", "other.test")])
    time.sleep(CAA_RECHECK_AFTER_S + 0.2)
    response = wire.finalize(account, ready, csr_der(Key.ec256(), [stays, turns]))
    doc = assert_problem(response, 403, "caa", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [{"type": "dns", "value": turns}]
    challtestsrv.clear_caa(turns)
    assert read(wire, account, order_url)["status"] == "ready"
    finalize(wire, account, ready, stays, turns)


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(CHAL_CAA, id="profile-urls"),
        pytest.param(DEFAULT, id="shorthand-urls"),
    ],
)
def test_caa_accounturi_names_the_account_url_the_client_was_given(
    main: Instance, responder: Responder, challtestsrv: ChallTestSrv, family: str
) -> None:
    """RFC 8657 §3: ``accounturi`` is the account URL the client knows, which is in the URL
    family of the directory it registered through (per profile, or the /acme shorthand)."""
    wire = main[family]
    account, other = wire.new_account(), wire.new_account()
    ours, theirs = unique("caa-acct-ours"), unique("caa-acct-theirs")
    challtestsrv.add_caa(ours, [("issue", f"{CA_IDENTITY}; accounturi={account.url}")])
    challtestsrv.add_caa(theirs, [("issue", f"{CA_IDENTITY}; accounturi={other.url}")])
    if family == DEFAULT:  # trust_authenticated: CAA is checked at finalize
        _, ready = wire.ready_order(account, theirs)
        response = wire.finalize(account, ready, csr_der(Key.ec256(), [theirs]))
        assert_problem(response, 403, "caa", wire.directory_url)
        _, ready = wire.ready_order(account, ours)
        finalize(wire, account, ready, ours)
        return
    _, order = order_for(wire, account, theirs)
    refused = prove_http01(wire, responder, account, order["authorizations"][0])
    assert challenge(refused)["error"]["type"] == URN + "caa", refused
    _, ready = validated_order(wire, responder, account, ours)
    finalize(wire, account, ready, ours)


def test_authz_from_trust_mode_is_not_reused_after_switching_to_challenge_mode(
    main: Instance,
) -> None:
    """A trust_authenticated authorization was never proven: once the profile demands
    challenges, it must not stand in for one."""
    wire = main[SWITCH]
    account = wire.new_account()
    name = unique("switch")
    wire.ready_order(account, name)
    certctl_cli(main.served, "profile", "update", SWITCH, "--acme-auth-mode", "challenge")
    deadline = time.monotonic() + 10
    while order_for(wire, account, unique("probe"))[1]["status"] != "pending":
        assert time.monotonic() < deadline, "the server never saw the profile change"
        time.sleep(0.2)
    _, order = order_for(wire, account, name)
    assert order["status"] == "pending", order


# -- dns-01 and IP identifiers at the API level ---------------------------------------------------


def test_wildcard_authz_offers_dns01_only_and_validates_through_txt(
    main: Instance, challtestsrv: ChallTestSrv
) -> None:
    wire = main[CHAL]
    account = wire.new_account()
    base = unique("wild")
    order_url, order = order_for(wire, account, f"*.{base}", base)
    found = authzs(wire, account, order)
    wildcard = next(a for a in found if a.get("wildcard"))
    plain = next(a for a in found if not a.get("wildcard"))
    assert wildcard["identifier"] == {"type": "dns", "value": base}  # no "*." (RFC 8555 §7.1.4)
    assert [c["type"] for c in wildcard["challenges"]] == ["dns-01"]
    assert sorted(c["type"] for c in plain["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]
    record = f"_acme-challenge.{base}"
    for authz in (wildcard, plain):  # both values at one name, as clients publish them
        chall = challenge(authz, "dns-01")
        digest = hashlib.sha256(key_authorization(chall["token"], account.key).encode())
        challtestsrv.set_txt(record, b64(digest.digest()))
    try:
        for url in order["authorizations"]:
            chall = challenge(read(wire, account, url), "dns-01")
            respond(wire, account, chall["url"])
            assert poll(wire, account, url)["status"] == "valid"
    finally:
        challtestsrv.clear_txt(record)
    ready = read(wire, account, order_url)
    assert ready["status"] == "ready"
    finalize(wire, account, ready, f"*.{base}", base)


def test_ip_identifier_offers_http01_and_tlsalpn01_and_validates_by_http01(
    main: Instance, responder: Responder
) -> None:
    wire = main[CHAL_IP]
    account = wire.new_account()
    ip = "127.0.0.1"
    response = wire.as_account(
        account, wire["newOrder"], {"identifiers": [{"type": "ip", "value": ip}]}
    )
    assert response.status_code == 201, response.text
    order_url, order = response.headers["Location"], response.json()
    (authz_url,) = order["authorizations"]
    authz = read(wire, account, authz_url)
    assert authz["identifier"] == {"type": "ip", "value": ip}
    assert sorted(c["type"] for c in authz["challenges"]) == ["http-01", "tls-alpn-01"]
    assert prove_http01(wire, responder, account, authz_url)["status"] == "valid"
    ready = read(wire, account, order_url)
    assert ready["status"] == "ready"
    cert_key = Key.ec256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .sign(cert_key.private, hashes.SHA256())
    )
    issued = wire.finalize(account, ready, csr.public_bytes(serialization.Encoding.DER))
    assert issued.status_code == 200, issued.text
    assert issued.json()["status"] == "valid"


# -- SSRF -----------------------------------------------------------------------------------------


def test_default_settings_refuse_to_validate_against_loopback(
    loopback_refused: Wire, responder: Responder
) -> None:
    """With CERTCTL_ACME_SERVER_VALIDATION_ALLOW_LOOPBACK at its default, a name resolving to
    127.0.0.1 is never contacted, even though the responder there has the right answer."""
    wire = loopback_refused
    account = wire.new_account()
    order_url, order = order_for(wire, account, unique("ssrf"))
    authz = prove_http01(wire, responder, account, order["authorizations"][0])
    assert authz["status"] == "invalid", authz
    http01 = challenge(authz)
    assert http01["error"]["type"] == URN + "connection", http01
    assert "127.0.0.1" in http01["error"]["detail"], http01
    assert responder.count(http01["token"]) == 0
    assert read(wire, account, order_url)["status"] == "invalid"


@pytest.mark.parametrize("ip", ["169.254.169.254", "0.0.0.0"])
def test_ip_identifier_of_a_forbidden_address_is_never_contacted(
    main: Instance, responder: Responder, ip: str
) -> None:
    """Cloud metadata (link-local) and the unspecified address stay forbidden even where
    loopback is allowed: the order is accepted by the profile, the validation refuses."""
    wire = main[CHAL_IP]
    account = wire.new_account()
    response = wire.as_account(
        account, wire["newOrder"], {"identifiers": [{"type": "ip", "value": ip}]}
    )
    assert response.status_code == 201, response.text
    authz = prove_http01(wire, responder, account, response.json()["authorizations"][0])
    assert authz["status"] == "invalid", authz
    http01 = challenge(authz)
    assert http01["error"]["type"] == URN + "connection", http01
    assert ip in http01["error"]["detail"], http01
    assert responder.count(http01["token"]) == 0


# -- recovery after a crash -----------------------------------------------------------------------


def kill_hard(server: ServedCertctl) -> None:
    """SIGKILL the served process group: a crash, not a graceful stop."""
    server.kill()


def test_validation_left_processing_by_a_killed_server_is_resumed_after_restart(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    challtestsrv: ChallTestSrv,
    responder: Responder,
) -> None:
    """Made deterministic by the responder: the server is killed while its validation is
    provably in flight (the request arrived, its answer is held back), so the challenge is
    left processing in the database. The restarted server uses a 2 s validation timeout;
    recovery claims validations older than twice that plus 5 s, checked every 2 s, so the
    challenge must be decided roughly 9 to 11 s after the original POST."""
    env = validation_env(challtestsrv, responder, CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT="30s")
    with challenge_instance(request, tmp_path_factory, database_url, env) as served:
        wire = Wire(served, f"/acme/profile/{CHAL}/directory")
        try:
            account = wire.new_account()
            order_url, order = order_for(wire, account, unique("crash"))
            (authz_url,) = order["authorizations"]
            chall = challenge(read(wire, account, authz_url))
            responder.serve(chall["token"], key_authorization(chall["token"], account.key))
            hold = responder.hold(chall["token"])
            respond(wire, account, chall["url"])
            assert hold.arrived.wait(DECIDE_TIMEOUT_S), "the validation never started"
            kill_hard(served)
            hold.release.set()  # its answer now goes to a dead socket
            challenge_id = last_segment(chall["url"])
            stuck = count_rows(
                served,
                "SELECT count(*) FROM acme_challenges WHERE id = :id AND status = 'processing'",
                id=challenge_id,
            )
            assert stuck == 1, "the killed server left no processing challenge behind"

            served.env["CERTCTL_ACME_SERVER_VALIDATION_TIMEOUT"] = "2s"
            served.start()
            wire.close()
            wire = Wire(served, f"/acme/profile/{CHAL}/directory")
            decided = poll(wire, account, authz_url)  # fails if still processing after 20 s
            assert decided["status"] == "valid", decided
            assert challenge(decided)["status"] == "valid"
            assert responder.count(chall["token"]) == 2  # the lost attempt and the resumed one
            assert read(wire, account, order_url)["status"] == "ready"
            assert audit_count(served, "acme_challenge_processing", challenge_id) == 1
            assert audit_count(served, "acme_challenge_completed", challenge_id) == 1
        finally:
            wire.close()
