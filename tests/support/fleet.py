"""A fleet of ``certctl serve`` replicas behind haproxy, for the fleet tests.

N replicas listen on their own free loopback ports, share one PostgreSQL database and ONE
data directory (the CA lives there, so every replica signs with the same CA and serves the
same TLS certificate, which covers 127.0.0.1), and sit behind an haproxy from Debian
started on a free port: TLS passthrough (``mode tcp``), round robin, HTTPS health checks
on ``/health``. Clients therefore see certctl's own certificate, as they would talk to a
single server.

The haproxy configuration is rendered by ``render_haproxy_config``; docs/deployment.md
shows the same text for an operator's layout, and a test keeps the two identical.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.gating import require_or_skip
from tests.support.ports import free_port
from tests.support.server import ServedCertctl

HAPROXY_START_TIMEOUT_S = 20.0
HAPROXY_STOP_TIMEOUT_S = 5.0
HAPROXY_BIND_ATTEMPTS = 3  # fresh ports each time a picked one was taken meanwhile
STATUS_POLL_S = 0.05
BACKEND = "certctl"


# -- haproxy configuration -------------------------------------------------------------


@dataclass(frozen=True)
class HaproxyLayout:
    """Where haproxy listens and what it balances over.

    ``bind`` and ``stats_bind`` are haproxy ``bind`` addresses; ``servers`` the replicas as
    (name, ``host:port``); ``ca_file`` the certctl root (``certctl ca root``) the HTTPS
    health checks verify the replicas' certificate with.
    """

    bind: str
    stats_bind: str
    servers: tuple[tuple[str, str], ...]
    ca_file: str


def render_haproxy_config(layout: HaproxyLayout) -> str:
    """The haproxy.cfg of a certctl fleet: TLS passthrough, round robin, health checks.

    - ``mode tcp``: haproxy never sees inside TLS, so clients get certctl's certificate
      and the request URLs (built from the Host header) are the public ones.
    - ``option redispatch 1`` with ``retries 3``: a connection refused by a replica that is
      down but not yet marked down is retried on another one.
    - health checks: ``GET /health`` over HTTPS every second, verified against the certctl
      root; two failures take a replica out, two successes bring it back.
    - no ``on-marked-down shutdown-sessions``: a replica that is draining after SIGTERM
      (its listener closed, so its checks fail) still finishes the requests in flight.
    """
    servers = "\n".join(f"    server {name} {address}" for name, address in layout.servers)
    return f"""\
global
    maxconn 4096
    log stdout format raw local0

defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch 1

frontend acme
    bind {layout.bind}
    option tcplog
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server check check-ssl verify required ca-file {layout.ca_file} inter 1s fall 2 rise 2
{servers}

listen stats
    mode http
    bind {layout.stats_bind}
    no log
    stats enable
    stats uri /stats
    stats refresh 5s
"""


def haproxy_executable() -> str:
    """haproxy from PATH (Debian installs it in /usr/sbin, which a user's PATH may lack);
    skips, or fails under CERTCTL_TEST_REQUIRE_ALL=1, when it is not installed."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    require_or_skip(found is not None, "haproxy not found (apt-get install haproxy)")
    assert found is not None
    return found


# -- access logs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One access-log line of a replica: method, path, status."""

    replica: int
    method: str
    path: str
    status: int


def access_log(path: Path, replica: int, offset: int = 0) -> list[Request]:
    """The requests logged in ``path`` from byte ``offset`` on (JSON lines of
    ``certctl.access``; other lines are skipped)."""
    requests: list[Request] = []
    with path.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.startswith(b"{"):
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue  # a line still being written
            if doc.get("logger") != "certctl.access":
                continue
            requests.append(Request(replica, doc["method"], doc["path"], int(doc["status"])))
    return requests


# -- the fleet -------------------------------------------------------------------------


class Replica(ServedCertctl):
    """A ``certctl serve`` of the fleet: its own port and log, the fleet's data directory."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        *,
        data_dir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, database_url, env=env, ready_path="/health")
        self.data_dir = data_dir
        self.name = name

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's pid, which is also its process group id (its own session)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return proc.pid

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing gets to clean up."""
        os.killpg(self.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the process group: uvicorn drains (see certctl.cli._protocol)."""
        os.killpg(self.pid, signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the process has exited within ``timeout``, else None."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def requests_since(self, offset: int, index: int) -> list[Request]:
        return access_log(self.log_path, index, offset)


class Fleet:
    """N replicas on one database and data directory, behind haproxy on a free port.

    Entering starts the replicas (the first alone: it creates the CA and the TLS
    certificate in the shared data directory, which the others load), then haproxy, and
    waits until haproxy reports every replica UP. Leaving stops haproxy, then the replicas.
    """

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        *,
        replicas: int = 3,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= replicas <= 3:
            raise ValueError("the fleet tests run 1 to 3 replicas (2 cores)")
        self.workdir = workdir
        self.database_url = database_url
        self.data_dir = workdir / "data"
        self.replicas = [
            Replica(
                workdir / f"replica{i + 1}",
                database_url,
                data_dir=self.data_dir,
                name=f"certctl{i + 1}",
                env=env,
            )
            for i in range(replicas)
        ]
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.stats_port = free_port(self.host)
        self.config_path = workdir / "haproxy.cfg"
        self.haproxy_log_path = workdir / "haproxy.log"
        self._haproxy: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        """What clients of the fleet send as Host: the URLs the replicas hand out use it."""
        return f"{self.host}:{self.port}"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/acme/directory"

    @property
    def root_pem_path(self) -> Path:
        return self.replicas[0].root_pem_path

    def layout(self) -> HaproxyLayout:
        return HaproxyLayout(
            bind=f"{self.host}:{self.port}",
            stats_bind=f"{self.host}:{self.stats_port}",
            servers=tuple((r.name, r.address) for r in self.replicas),
            ca_file=str(self.root_pem_path),
        )

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        haproxy = haproxy_executable()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The first start creates the CA and the TLS certificate in the shared data
        # directory; the others only load them, so they start together.
        self.replicas[0].start()
        with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
            for started in [pool.submit(r.start) for r in self.replicas[1:]]:
                started.result()
        for attempt in range(HAPROXY_BIND_ATTEMPTS):
            try:
                self._start_haproxy(haproxy)
                return
            except RuntimeError as exc:
                # A port picked as free can be taken before haproxy binds it (an outgoing
                # connection of a test running beside this one gets it as its ephemeral
                # port): pick both again. Anything else is a real failure.
                if "cannot bind socket" not in str(exc) or attempt + 1 == HAPROXY_BIND_ATTEMPTS:
                    raise
                self._stop_haproxy()
                self.port = free_port(self.host)
                self.stats_port = free_port(self.host)

    def _start_haproxy(self, haproxy: str) -> None:
        self.config_path.write_text(render_haproxy_config(self.layout()))
        check = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused the config:\n{check.stdout}{check.stderr}")
        with self.haproxy_log_path.open("ab") as log:
            self._haproxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_status({r.name: "UP" for r in self.replicas}, HAPROXY_START_TIMEOUT_S)

    def stop(self) -> None:
        self._stop_haproxy()
        for replica in self.replicas:
            replica.stop()

    def _stop_haproxy(self) -> None:
        proc, self._haproxy = self._haproxy, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=HAPROXY_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=HAPROXY_STOP_TIMEOUT_S)

    # -- haproxy's view --------------------------------------------------------------

    def server_status(self) -> dict[str, str]:
        """haproxy's status of each replica (``UP``, ``DOWN``, ``UP 1/2``, ...), from the
        CSV of the stats page."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://{self.host}:{self.stats_port}/stats;csv"
        with opener.open(url, timeout=5) as resp:
            text = resp.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in {"FRONTEND", "BACKEND"}
        }

    def wait_status(self, wanted: Mapping[str, str], timeout: float) -> float:
        """Wait until haproxy reports ``wanted`` (replica name -> status); the seconds it
        took. Raises with haproxy's log tail when it does not happen in time."""
        started = time.monotonic()
        last: dict[str, str] | str = "no answer"
        while time.monotonic() - started < timeout:
            if self._haproxy is not None and self._haproxy.poll() is not None:
                raise RuntimeError(
                    f"haproxy exited with {self._haproxy.returncode}\n{self.log_tail()}"
                )
            try:
                last = self.server_status()
            except (urllib.error.URLError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if isinstance(last, dict) and all(last.get(k) == v for k, v in wanted.items()):
                return time.monotonic() - started
            time.sleep(STATUS_POLL_S)
        raise RuntimeError(
            f"haproxy did not report {dict(wanted)} within {timeout:.0f}s (last: {last})\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.haproxy_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no haproxy log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of the haproxy log ---\n{tail}\n--- end ---"

    # -- access logs -----------------------------------------------------------------

    def log_offsets(self) -> list[int]:
        return [r.log_size() for r in self.replicas]

    def requests_since(self, offsets: Sequence[int]) -> list[Request]:
        """Every replica's requests logged after ``offsets`` (from ``log_offsets``)."""
        found: list[Request] = []
        for index, (replica, offset) in enumerate(zip(self.replicas, offsets, strict=True)):
            found += replica.requests_since(offset, index)
        return found

    def diagnostics(self) -> str:
        """Log tails of haproxy and every replica, for a failing test's report."""
        return "\n".join([self.log_tail(), *(r.log_tail(30) for r in self.replicas)])
