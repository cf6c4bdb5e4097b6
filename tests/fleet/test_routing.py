"""Requests of one ACME flow land on different replicas, and the flow still works.

haproxy balances TCP connections round robin. With keep-alive off on the client (every
request on a new connection), consecutive requests of one flow go to different replicas:
the nonce one replica minted is spent on another, the account created on one signs the
order on the next, the order is finalized on a third. The replicas' access logs (one JSON
line per request) show where each request went.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from certctl.observability.logs import ACCESS_FLUSH_S
from tests.fleet.helpers import FleetDb, Record, fleet_client, leaf_serial
from tests.support.certs import ECDSA_P256, assert_issued, load_chain, write_pem
from tests.support.clients import (
    certbot_certonly_command,
    certbot_env,
    certbot_executable,
    certbot_log_tail,
    lego_env,
    lego_executable,
    lego_run_command,
    run_client,
)
from tests.support.fleet import Fleet, Request
from tests.support.ports import free_port

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]


@pytest.fixture
def fleet(shared_fleet: Fleet) -> Fleet:
    """This module's tests leave the fleet as they found it: they share one."""
    return shared_fleet


FLOWS = 3
LOG_WAIT_S = 5.0
# What the flow sends (RFC 8555 §7): the endpoint names as they appear in request paths.
STEPS = ("new-nonce", "new-account", "new-order", "finalize", "cert")


def step_of(request: Request) -> str | None:
    path = request.path
    if not path.startswith("/acme/"):
        return None  # /health: haproxy's checks
    for step in ("new-nonce", "new-account", "new-order"):
        if path == f"/acme/{step}":
            return step
    if path.startswith("/acme/order/") and path.endswith("/finalize"):
        return "finalize"
    if path.startswith("/acme/cert/"):
        return "cert"
    return "other"


def test_one_flow_spans_replicas(fleet: Fleet, record_property: Record) -> None:
    db = FleetDb(fleet.database_url)
    spreads = []
    for n in range(FLOWS):
        # Flows run one at a time, so every ACME request logged meanwhile is this flow's.
        offsets = fleet.log_offsets()
        client = fleet_client(fleet.directory_url, fleet.root_pem_path, keepalive=False)
        regr = client.register()
        order, chain, _ = client.issue(f"flow{n}.fleet.test")
        assert regr.uri is not None and order.body.certificate is not None

        cert_path = "/acme/cert/" + order.body.certificate.rsplit("/", 1)[1]
        logged = _acme_requests(fleet, offsets, until=cert_path)
        where: dict[str, set[int]] = defaultdict(set)
        for request in logged:
            assert request.status < 400, request
            step = step_of(request)
            assert step is not None
            where[step].add(request.replica)
        assert set(STEPS) <= set(where), (STEPS, logged)
        # The flow's own URLs were served: its order's finalize, its certificate.
        paths = {r.path for r in logged}
        order_id = order.uri.rsplit("/", 1)[1]
        assert f"/acme/order/{order_id}/finalize" in paths, paths
        assert cert_path in paths, paths

        replicas = set().union(*(where[s] for s in STEPS))
        assert len(replicas) >= 2, f"flow {n}: every step on replica(s) {replicas}: {logged}"
        spreads.append(
            " ".join(
                f"{s}@{'+'.join(fleet.replicas[i].name for i in sorted(where[s]))}" for s in STEPS
            )
        )
        assert leaf_serial(chain) in {serial for _, serial, _ in db.certificates()}
    for n, spread in enumerate(spreads):
        record_property(f"fleet_flow{n}", spread)


def _acme_requests(fleet: Fleet, offsets: list[int], until: str) -> list[Request]:
    """The ACME requests logged since ``offsets``, once ``until`` (the flow's last request)
    is among them. Replicas write access lines in batches, each within ACCESS_FLUSH_S of
    its request: the other replicas' lines of the flow may come up to that much later
    than the last one, so the logs are read once more after it."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        logged = [r for r in fleet.requests_since(offsets) if step_of(r) is not None]
        if any(r.path == until for r in logged):
            time.sleep(2 * ACCESS_FLUSH_S + 0.2)
            return [r for r in fleet.requests_since(offsets) if step_of(r) is not None]
        if time.monotonic() > deadline:
            return logged
        time.sleep(0.05)


def test_certbot_through_haproxy(fleet: Fleet, tmp_path: Path) -> None:
    certbot = certbot_executable()
    workdir = tmp_path / "certbot"
    names = ("certbot.fleet.test",)
    cmd = certbot_certonly_command(
        certbot=certbot,
        directory_url=fleet.directory_url,
        workdir=workdir,
        names=names,
        key_type=ECDSA_P256,
        http01_port=free_port(),
    )
    offsets = fleet.log_offsets()
    run_client(
        cmd,
        certbot_env(fleet.root_pem_path),
        cwd=tmp_path,
        extra_diagnostics=lambda: certbot_log_tail(workdir),
    )
    live = workdir / "config" / "live" / names[0]
    assert_issued(
        leaf_pem=live / "cert.pem",
        chain_pem=live / "chain.pem",
        key_pem=live / "privkey.pem",
        root_pem=fleet.root_pem_path,
        names=names,
        key_type=ECDSA_P256,
    )
    _assert_recorded(fleet, (live / "cert.pem").read_text())
    assert any(r.path.startswith("/acme/") for r in fleet.requests_since(offsets))


def test_lego_through_haproxy(fleet: Fleet, tmp_path: Path) -> None:
    lego = lego_executable()
    lego_path = tmp_path / "lego"
    names = ("lego.fleet.test",)
    cmd = lego_run_command(
        lego=lego,
        directory_url=fleet.directory_url,
        lego_path=lego_path,
        names=names,
        key_type=ECDSA_P256,
        http_port=free_port(),
    )
    run_client(cmd, lego_env(fleet.root_pem_path), cwd=tmp_path)
    certificates = lego_path / "certificates"
    bundle = load_chain(certificates / f"{names[0]}.crt")
    assert_issued(
        leaf_pem=write_pem(tmp_path / "leaf.pem", bundle[:1]),
        chain_pem=certificates / f"{names[0]}.issuer.crt",
        key_pem=certificates / f"{names[0]}.key",
        root_pem=fleet.root_pem_path,
        names=names,
        key_type=ECDSA_P256,
    )
    _assert_recorded(fleet, (certificates / f"{names[0]}.crt").read_text())


def _assert_recorded(fleet: Fleet, chain_pem: str) -> None:
    serials = [serial for _, serial, _ in FleetDb(fleet.database_url).certificates()]
    assert serials.count(leaf_serial(chain_pem)) == 1, serials
