"""The fleet's own start-up: a port picked as free can be taken before haproxy binds it
(by an outgoing connection of a test running beside this one, as its ephemeral port).
The fleet then picks fresh ports and starts haproxy again, instead of failing."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.fleet.conftest import FLEET_ENV, fleet_database
from tests.support.fleet import Fleet


def test_a_port_taken_before_haproxy_binds_it_is_picked_again(
    tmp_path: Path, haproxy_bin: str
) -> None:
    with fleet_database() as url:
        fleet = Fleet(tmp_path / "fleet", url, env=FLEET_ENV, replicas=1)
        taken = fleet.stats_port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind((fleet.host, taken))
            squatter.listen()
            with fleet:
                assert fleet.stats_port != taken
                assert "cannot bind socket" in fleet.log_tail()
                status = fleet.server_status()
                assert set(status.values()) == {"UP"}, status
