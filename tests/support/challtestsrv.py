"""pebble-challtestsrv (Debian package ``pebble``): a programmable test DNS server.

``ChallTestSrv`` starts it on free loopback ports with only its DNS server and its
management API enabled (its own http-01/tls-alpn-01 responders are off: the clients under
test answer those). Every A query is answered with 127.0.0.1 unless a test adds records;
AAAA queries get no answer, so validation connects to the IPv4 loopback directly.

The management client covers what the tests use: TXT (dns-01), A, CAA and SERVFAIL
records. Hosts are sent fully qualified: challtestsrv keys its TXT records by FQDN.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from tests.support.gating import require_executable

EXECUTABLE = "pebble-challtestsrv"
INSTALL_HINT = "apt-get install pebble"
STARTUP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
STOP_TIMEOUT_S = 5.0
MANAGEMENT_TIMEOUT_S = 5.0
HOST = "127.0.0.1"


def challtestsrv_executable() -> str:
    """Path of pebble-challtestsrv; skips (fails under CERTCTL_TEST_REQUIRE_ALL=1)."""
    return require_executable(EXECUTABLE, INSTALL_HINT)


def free_udp_tcp_port(host: str = HOST) -> int:
    """A port currently free for both UDP and TCP on ``host`` (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def fqdn(host: str) -> str:
    return host if host.endswith(".") else host + "."


class ChallTestSrvError(RuntimeError):
    """pebble-challtestsrv did not start, or its management API refused a request."""


class ChallTestSrv:
    """A running pebble-challtestsrv with its management client.

    Use as a context manager. ``resolver`` is the ``host:port`` to hand to
    ``CERTCTL_ACME_SERVER_DNS01_RESOLVER`` and to clients' resolver options.
    """

    def __init__(self, workdir: Path, executable: str | None = None) -> None:
        self.executable = executable or challtestsrv_executable()
        self.workdir = workdir
        self.log_path = workdir / "challtestsrv.log"
        self.dns_port = 0
        self.management_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def resolver(self) -> str:
        return f"{HOST}:{self.dns_port}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.management_port}"

    def __enter__(self) -> ChallTestSrv:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start on fresh free ports; a lost port race (another process took one between
        the probe and the bind) is retried with new ports."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(START_ATTEMPTS):
            self.dns_port = free_udp_tcp_port()
            self.management_port = free_udp_tcp_port()
            if self.management_port == self.dns_port:
                continue
            cmd = [
                self.executable,
                "-dns01",
                self.resolver,
                "-management",
                f"{HOST}:{self.management_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]
            with self.log_path.open("ab") as log:
                log.write(f"=== {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return
            last = self.log_tail()
            self.stop()
        raise ChallTestSrvError(f"{EXECUTABLE} did not start:\n{last}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)

    def _wait_ready(self) -> bool:
        """True once both the management API and the DNS server (UDP) answer."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                return False
            if self._management_up() and self._dns_up():
                return True
            time.sleep(0.05)
        return False

    def _management_up(self) -> bool:
        try:
            with socket.create_connection((HOST, self.management_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _dns_up(self) -> bool:
        query = dns.message.make_query("ready.challtestsrv.test.", dns.rdatatype.A)
        try:
            dns.query.udp(query, HOST, port=self.dns_port, timeout=0.5)
        except (dns.exception.DNSException, OSError):
            return False
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no challtestsrv log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- management API ----------------------------------------------------------------------

    def post(self, endpoint: str, body: dict[str, object]) -> None:
        """POST ``body`` as JSON to ``/<endpoint>``; anything but 200 raises."""
        request = urllib.request.Request(
            f"{self.management_url}/{endpoint}",
            data=json.dumps(body).encode(),
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=MANAGEMENT_TIMEOUT_S) as response:
                response.read()
                status: int = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        if status != 200:
            raise ChallTestSrvError(f"{endpoint} {body} answered HTTP {status}")

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT value at ``host`` (values accumulate until ``clear_txt``)."""
        self.post("set-txt", {"host": fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        self.post("clear-txt", {"host": fqdn(host)})

    def add_a(self, host: str, addresses: Sequence[str]) -> None:
        """A records for ``host`` instead of the default 127.0.0.1."""
        self.post("add-a", {"host": fqdn(host), "addresses": list(addresses)})

    def clear_a(self, host: str) -> None:
        self.post("clear-a", {"host": fqdn(host)})

    def add_caa(self, host: str, policies: Sequence[tuple[str, str]]) -> None:
        """CAA records at ``host``: ``(tag, value)`` pairs, e.g. ``("issue", "ca.test")``."""
        body = [{"tag": tag, "value": value} for tag, value in policies]
        self.post("add-caa", {"host": fqdn(host), "policies": body})

    def clear_caa(self, host: str) -> None:
        self.post("clear-caa", {"host": fqdn(host)})

    def set_servfail(self, host: str) -> None:
        """Every query for ``host`` answers SERVFAIL."""
        self.post("set-servfail", {"host": fqdn(host)})

    def clear_servfail(self, host: str) -> None:
        self.post("clear-servfail", {"host": fqdn(host)})


@contextlib.contextmanager
def running_challtestsrv(workdir: Path) -> Iterator[ChallTestSrv]:
    """``with running_challtestsrv(dir) as dns:`` (skips/fails first when not installed)."""
    with ChallTestSrv(workdir) as server:
        yield server
