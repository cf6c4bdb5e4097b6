"""A throwaway PostgreSQL cluster of the local server installation, for restart tests.

Restarting the machine's ``main`` cluster would break every other test using it at the
same moment (``make test`` runs the suite in parallel), so the restart test creates its
own cluster with Debian's tools (``pg_createcluster``, same version as ``main``: found
under /etc/postgresql) on a free port, restarts that one with ``pg_ctlcluster
--skip-systemctl-redirect <version> <name> restart``, and drops it afterwards. Clusters
left by a test process that died are dropped by the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.gating import require_or_skip
from tests.support.ports import free_port

PREFIX = "certctl_fleet_"
CONFIG_ROOT = Path("/etc/postgresql")
TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters")
TOOL_TIMEOUT_S = 120
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, action: str) -> None:
        """``pg_ctlcluster --skip-systemctl-redirect <version> <name> <action>``."""
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action])

    def running(self) -> bool:
        status = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "status"],
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
        return status.returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.ctl("start")
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}{result.stderr}"
        )


def server_version() -> str | None:
    """The newest PostgreSQL version with a configuration under /etc/postgresql."""
    if not CONFIG_ROOT.is_dir():
        return None
    versions = [p.name for p in CONFIG_ROOT.iterdir() if p.name.replace(".", "").isdigit()]
    return max(versions, key=lambda v: [int(x) for x in v.split(".")], default=None)


def _drop_stale(version: str) -> None:
    """Drop clusters of earlier test processes that died before dropping their own."""
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != version or not fields[1].startswith(PREFIX):
            continue
        pid = fields[1][len(PREFIX) :].split("_", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(["pg_dropcluster", "--stop", version, fields[1]])
        except PermissionError:
            pass  # alive, someone else's


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A new, running cluster (trust authentication on loopback), dropped afterwards.

    Skips locally, fails in CI (CERTCTL_TEST_REQUIRE_ALL=1), without the server tools or
    root (pg_createcluster runs the cluster as the postgres user, which needs root)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require_or_skip(
        not missing, f"{', '.join(missing)} not found (apt-get install postgresql-common)"
    )
    require_or_skip(os.geteuid() == 0, "creating a PostgreSQL cluster needs root")
    version = server_version()
    require_or_skip(version is not None, f"no PostgreSQL server version under {CONFIG_ROOT}")
    assert version is not None
    _drop_stale(version)
    cluster = Cluster(version, f"{PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}", free_port())
    try:
        _run(
            [
                "pg_createcluster",
                version,
                cluster.name,
                "--port",
                str(cluster.port),
                "--",
                "--auth-host=trust",
                "--auth-local=trust",
            ]
        )
        cluster.ctl("start")
        cluster.wait_ready()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run(["pg_dropcluster", "--stop", version, cluster.name])
