"""``python -m bench.soak``: a mixed load against certctl for a while; writes docs/soak.md.

One certctl (:class:`bench.targets.CertctlTarget`, SQLite, one worker by default) gets,
all at once for ``--duration`` seconds (600 by default):

- issuance flows, back to back, by a few virtual users (:class:`bench.driver.Driver`), and
  a steady trickle of new accounts;
- directory, newNonce (HEAD and GET) and /health;
- requests that must be refused: malformed JWS, a bad nonce, a body over the cap, an
  unknown path, the wrong media type, a request-smuggling shape (Content-Length with
  Transfer-Encoding);
- OCSP GETs (RFC 6960 Appendix A.1) about a fixed set of the first certificates issued,
  so the OCSP response cache stays the same size and growth would mean a leak, not a
  cache filling up;
- connections that idle after their TLS handshake, connections that never start one,
  slow heads and slow bodies, each reopened as soon as the server closes it.

Every few seconds the resident memory (VmRSS) of the server's process tree is read from
/proc. The report gives its start, peak and end, its growth over the second half of the
run, every outcome of every kind of request, and how many answers were 5xx (the client's
view and the server's access log): there must be none. :func:`run_soak` is also what
``tests/integration/test_soak.py`` runs, for a minute, against a served certctl.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from certctl.cli._protocol import HEAD_TIMEOUT_S

from .driver import Driver, FlowError, TargetSpec, VirtualUser
from .jose import AccountKey, dumps
from .procstat import CpuMeter, SystemMeter, tree
from .targets import CERTCTL_ENV, CertctlTarget, TargetError, git_head

DEFAULT_DURATION_S = 600.0
DEFAULT_REPORT = "docs/soak.md"
SAMPLE_INTERVAL_S = 5.0
REQUEST_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0  # for flows in flight when the time is up
# When the server must have closed a connection it closes by itself, counted from the
# connection (idle, silent) or from the first byte of the request (slow head, slow body).
CLOSE_SLACK_S = 5.0
HANDSHAKE_TIMEOUT_S = 60.0  # asyncio's and uvloop's default; uvicorn sets none
SLOW_BODY_TIMEOUT_S = 15.0  # the ACME body timeout (408)
OVERSIZED_BODY = 70 * 1024  # over the default 64 KiB cap
ENV = CERTCTL_ENV  # rate limits off: all of this comes from one address


@dataclass(frozen=True)
class Mix:
    """How much of each kind of load runs at the same time."""

    flow_users: int = 4  # issuance flows back to back, one per user
    accounts_per_s: float = 1.0
    gets_per_s: float = 80.0  # directory, newNonce (HEAD, GET) and /health in turn
    bad_per_s: float = 30.0  # the refused requests in turn
    ocsp_per_s: float = 40.0
    ocsp_certificates: int = 100  # the fixed set OCSP GETs ask about
    idle_tls: int = 30  # handshaked, then silent
    silent_tcp: int = 30  # no TLS handshake at all
    slow_heads: int = 3
    slow_bodies: int = 3


# The outcome every kind of request must have; any other is counted as unexpected.
EXPECTED = {
    "flow": "ok",
    "newAccount": "ok",
    "directory": "200",
    "newNonce HEAD": "200",
    "newNonce GET": "204",
    "health": "200",
    "malformed JWS": "400",
    "bad nonce": "400",
    "body over the cap": "413",
    "unknown path": "404",
    "wrong media type": "415",
    "smuggling shape": "400",
    "OCSP GET": "200",
    "idle TLS connection": "closed",
    "silent TCP connection": "closed",
    "slow head": "closed",
    "slow body": "408",
}


@dataclass(frozen=True)
class Server:
    """What the load needs to know about the server under test."""

    directory_url: str
    ca_pem: str
    root_pids: tuple[int, ...]
    log_path: Path | None = None  # its JSON log, for the 5xx it logged


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the load started
    rss: int  # bytes, the whole process tree
    fds: int  # open file descriptors, the whole process tree


@dataclass
class Tally:
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    max_latency_s: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, outcome: str, latency_s: float | None = None) -> None:
        self.outcomes.setdefault(kind, Counter())[outcome] += 1
        if latency_s is not None:
            self.max_latency_s[kind] = max(self.max_latency_s.get(kind, 0.0), latency_s)

    def total(self, kind: str) -> int:
        return sum(self.outcomes.get(kind, Counter()).values())

    def unexpected(self) -> dict[str, dict[str, int]]:
        out = {}
        for kind, counts in self.outcomes.items():
            other = {k: n for k, n in counts.items() if k != EXPECTED.get(kind)}
            if other:
                out[kind] = other
        return out

    def five_xx(self) -> int:
        return sum(
            n
            for counts in self.outcomes.values()
            for outcome, n in counts.items()
            if outcome[:1] == "5" and outcome[:3].isdigit()
        )


@dataclass
class SoakResult:
    duration_s: float
    wall_s: float  # from the start of the load to the end of its last task
    mix: Mix
    samples: list[Sample]
    tally: Tally
    requests: int  # HTTP requests made during the load
    server_5xx: int | None  # access-log lines with a 5xx status (None: no log)
    server_errors: int | None  # log lines at level error
    server_cpu_s: float
    client_cpu_s: float
    machine_busy_s: float
    cpus: int

    @property
    def start_rss(self) -> int:
        return self.samples[0].rss

    @property
    def peak_rss(self) -> int:
        return max(s.rss for s in self.samples)

    @property
    def end_rss(self) -> int:
        return self.samples[-1].rss

    def second_half(self) -> list[Sample]:
        return [s for s in self.samples if s.t >= self.duration_s / 2]

    @property
    def second_half_growth(self) -> float:
        """RSS growth over the second half (bytes) from a least-squares line through its
        samples: less sensitive to one noisy sample than end minus middle."""
        half = self.second_half()
        if len(half) < 2:
            return 0.0
        mean_t = sum(s.t for s in half) / len(half)
        mean_r = sum(s.rss for s in half) / len(half)
        var = sum((s.t - mean_t) ** 2 for s in half)
        if var == 0:
            return 0.0
        slope = sum((s.t - mean_t) * (s.rss - mean_r) for s in half) / var
        return slope * (half[-1].t - half[0].t)

    @property
    def end_minus_middle(self) -> int:
        half = self.second_half()
        return half[-1].rss - half[0].rss if half else 0


# -- memory ----------------------------------------------------------------------------


def _status_field(pid: int, name: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(name):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0


class MemorySampler:
    """VmRSS and open descriptors of a process tree, every ``interval`` seconds."""

    def __init__(self, root_pids: Sequence[int], interval: float) -> None:
        self._select = tree(root_pids)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0
        self.samples: list[Sample] = []

    def sample(self) -> None:
        pids = [p.pid for p in self._select()]
        rss = sum(_status_field(pid, "VmRSS:") for pid in pids) * 1024
        fds = sum(_fds(pid) for pid in pids)
        self.samples.append(Sample(time.monotonic() - self._t0, rss, fds))

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.sample()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- the load --------------------------------------------------------------------------


class Load:
    """All the kinds of load, as asyncio tasks, until ``stop`` is set."""

    def __init__(self, server: Server, mix: Mix) -> None:
        self.server = server
        self.mix = mix
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.tls = ssl.create_default_context(cadata=server.ca_pem)
        split = urllib.parse.urlsplit(server.directory_url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 443
        self.base = f"{split.scheme}://{split.netloc}"
        self.client = httpx.AsyncClient(
            verify=self.tls,
            trust_env=False,  # loopback only: no proxy from the environment
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.driver = Driver(TargetSpec(server.directory_url, server.ca_pem), 0)
        self.directory: dict[str, str] = {}
        self.ocsp_urls: list[str] = []
        self.requests = 0  # HTTP requests the server answered (or failed to) during the load

    async def close(self) -> None:
        await self.client.aclose()
        await self.driver.close()

    async def prepare(self) -> None:
        """Accounts for the flow users and one certificate (so OCSP has something)."""
        await self.driver.setup(self.mix.flow_users)
        self.directory = self.driver.directory
        await self.driver.flow(self.driver.users[0])
        self._remember_for_ocsp()

    def tasks(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        mix = self.mix
        work: list[Callable[[], Coroutine[Any, Any, None]]] = [
            *(lambda u=u: self._flows(u) for u in self.driver.users[: mix.flow_users]),
            lambda: self._paced(mix.accounts_per_s, self._new_account),
            lambda: self._paced(mix.gets_per_s, self._get),
            lambda: self._paced(mix.bad_per_s, self._bad),
            lambda: self._paced(mix.ocsp_per_s, self._ocsp),
        ]
        work += [self._idle_tls] * mix.idle_tls
        work += [self._silent_tcp] * mix.silent_tcp
        work += [self._slow_head] * mix.slow_heads
        work += [self._slow_body] * mix.slow_bodies
        return work

    # -- pacing ------------------------------------------------------------------------

    async def _paced(self, per_s: float, op: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        """``op(i)`` about ``per_s`` times a second, several at once when answers are slow."""
        if per_s <= 0:
            return
        interval = 1.0 / per_s
        pending: set[asyncio.Task[None]] = set()
        i = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            if len(pending) < 16:
                task = asyncio.create_task(op(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(next_at - time.monotonic(), 0))
        if pending:
            await asyncio.wait(pending)

    async def _timed(self, kind: str, request: Awaitable[httpx.Response]) -> None:
        started = time.monotonic()
        self.requests += 1
        try:
            response = await request
        except httpx.HTTPError as exc:
            self.tally.add(kind, type(exc).__name__)
            return
        self.tally.add(kind, str(response.status_code), time.monotonic() - started)

    # -- ACME --------------------------------------------------------------------------

    async def _flows(self, user: VirtualUser) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            before = user.requests
            try:
                await self.driver.flow(user)
            except FlowError as exc:
                self.tally.add("flow", exc.kind)
                await asyncio.sleep(0.05)
                continue
            except (KeyError, ValueError, TypeError, StopIteration) as exc:
                self.tally.add("flow", f"malformed response ({type(exc).__name__})")
                continue
            finally:
                self.requests += user.requests - before
            self.tally.add("flow", "ok", time.monotonic() - started)
            if len(self.ocsp_urls) < self.mix.ocsp_certificates:
                self._remember_for_ocsp()

    async def _new_account(self, _: int) -> None:
        started = time.monotonic()
        user = VirtualUser(AccountKey())  # only for its nonce: the account key is new
        try:
            await self.driver.new_account(user)
        except FlowError as exc:
            self.tally.add("newAccount", exc.kind)
            return
        finally:
            self.requests += user.requests
            await self.driver.release(user)
        self.tally.add("newAccount", "ok", time.monotonic() - started)

    async def _get(self, i: int) -> None:
        which = i % 4
        if which == 0:
            await self._timed("directory", self.client.get(self.server.directory_url))
        elif which == 1:
            await self._timed("newNonce HEAD", self.client.head(self.directory["newNonce"]))
        elif which == 2:
            await self._timed("newNonce GET", self.client.get(self.directory["newNonce"]))
        else:
            await self._timed("health", self.client.get(f"{self.base}/health"))

    async def _bad(self, i: int) -> None:
        jose = {"Content-Type": "application/jose+json"}
        url = self.directory["newAccount"]
        which = i % 6
        if which == 0:
            body = b'{"protected": "e30", "payload": "", "signature": '  # cut short
            await self._timed("malformed JWS", self.client.post(url, content=body, headers=jose))
        elif which == 1:
            nonce = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
            body = AccountKey().sign(url, nonce, dumps({"termsOfServiceAgreed": True}), None)
            await self._timed("bad nonce", self.client.post(url, content=body, headers=jose))
        elif which == 2:
            body = b"{" + b" " * OVERSIZED_BODY + b"}"
            await self._timed(
                "body over the cap", self.client.post(url, content=body, headers=jose)
            )
        elif which == 3:
            path = f"/acme/no-such-{secrets.token_hex(8)}"
            await self._timed("unknown path", self.client.get(self.base + path))
        elif which == 4:
            headers = {"Content-Type": "application/json"}
            await self._timed(
                "wrong media type", self.client.post(url, content=b"{}", headers=headers)
            )
        else:
            await self._smuggling_shape()

    async def _smuggling_shape(self) -> None:
        hidden = f"GET /acme/hidden-{secrets.token_hex(8)} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
        request = (
            f"POST /acme/new-account HTTP/1.1\r\nHost: {self.host}\r\n"
            "Content-Type: application/jose+json\r\n"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden
        ).encode()
        started = time.monotonic()
        self.requests += 1
        try:
            reader, writer = await self._open(tls=True)
        except OSError as exc:
            self.tally.add("smuggling shape", type(exc).__name__)
            return
        try:
            writer.write(request)
            received = await asyncio.wait_for(_read_to_eof(reader), REQUEST_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.tally.add("smuggling shape", type(exc).__name__)
            return
        finally:
            writer.transport.abort()
        statuses = received.count(b"HTTP/1.1 ")
        status = (
            received[9:12].decode("ascii", "replace") if statuses == 1 else f"{statuses} answers"
        )
        self.tally.add("smuggling shape", status, time.monotonic() - started)

    # -- OCSP --------------------------------------------------------------------------

    def _remember_for_ocsp(self) -> None:
        pem = self.driver.last_pem
        if pem:
            url = ocsp_get_url(pem)
            if url is not None:
                self.ocsp_urls.append(url)

    async def _ocsp(self, i: int) -> None:
        if self.ocsp_urls:
            url = self.ocsp_urls[i % len(self.ocsp_urls)]
            await self._timed("OCSP GET", self.client.get(url))

    # -- connections the server must close ----------------------------------------------

    async def _open(self, *, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if tls:
            return await asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.host
            )
        return await asyncio.open_connection(self.host, self.port)

    async def _until_closed(
        self,
        kind: str,
        *,
        tls: bool,
        limit_s: float,
        send: Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Open, optionally send, and wait for the server to close (or answer): over and
        over, until the load stops."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                reader, writer = await self._open(tls=tls)
            except OSError as exc:
                self.tally.add(kind, type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            sender = asyncio.create_task(send(writer)) if send is not None else None
            outcome = await self._wait_closed(reader, limit_s)
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await sender
            writer.transport.abort()
            if outcome is None:
                return  # the load stopped first: nothing to count
            self.tally.add(kind, outcome, time.monotonic() - started)

    async def _wait_closed(self, reader: asyncio.StreamReader, limit_s: float) -> str | None:
        """The outcome: "closed", the status of an answer followed by a close, "still open"
        past ``limit_s``, or None when the load stopped first."""
        read = asyncio.create_task(asyncio.wait_for(_read_to_eof(reader), limit_s))
        stopped = asyncio.create_task(self.stop.wait())
        done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if read not in done:
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, OSError):
                await read
            return None
        stopped.cancel()
        try:
            received = read.result()
        except TimeoutError:
            return "still open"
        except OSError:
            return "closed"  # reset
        if received.startswith(b"HTTP/1.1 "):
            return received[9:12].decode("ascii", "replace")
        return "closed" if not received else "unexpected bytes"

    async def _idle_tls(self) -> None:
        await self._until_closed(
            "idle TLS connection", tls=True, limit_s=HEAD_TIMEOUT_S + CLOSE_SLACK_S
        )

    async def _silent_tcp(self) -> None:
        await self._until_closed(
            "silent TCP connection", tls=False, limit_s=HANDSHAKE_TIMEOUT_S + CLOSE_SLACK_S
        )

    async def _slow_head(self) -> None:
        async def trickle(writer: asyncio.StreamWriter) -> None:
            writer.write(f"GET /acme/directory HTTP/1.1\r\nHost: {self.host}\r\n".encode())
            while True:  # a field line a second: the head never ends
                await asyncio.sleep(1.0)
                writer.write(b"X-Slow: 1\r\n")

        await self._until_closed(
            "slow head", tls=True, limit_s=HEAD_TIMEOUT_S + CLOSE_SLACK_S, send=trickle
        )

    async def _slow_body(self) -> None:
        async def stall(writer: asyncio.StreamWriter) -> None:
            writer.write(
                (
                    f"POST /acme/new-order HTTP/1.1\r\nHost: {self.host}\r\n"
                    "Content-Type: application/jose+json\r\nContent-Length: 100\r\n\r\n{"
                ).encode()
            )
            await asyncio.sleep(3600)

        await self._until_closed(
            "slow body", tls=True, limit_s=SLOW_BODY_TIMEOUT_S + CLOSE_SLACK_S, send=stall
        )


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
    return data


def ocsp_get_url(pem: str) -> str | None:
    """The RFC 6960 Appendix A.1 GET URL for the leaf of ``pem`` (leaf, then its issuer),
    at the responder its AIA names; None without one."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    if len(certs) < 2:
        return None
    leaf, issuer = certs[0], certs[1]
    try:
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    responders = [
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    if not responders:
        return None
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()  # noqa: S303 -- RFC 5019 CertIDs use SHA-1
    der = request.public_bytes(serialization.Encoding.DER)
    encoded = urllib.parse.quote(base64.b64encode(der).decode("ascii"), safe="")
    return f"{responders[0].rstrip('/')}/{encoded}"


# -- running ---------------------------------------------------------------------------


def _server_log_counts(path: Path | None, offset: int) -> tuple[int | None, int | None]:
    """Access-log lines with a 5xx status, and lines at level error, after ``offset``."""
    if path is None:
        return None, None
    five_xx = errors = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            status = line.get("status")
            if line.get("msg") == "request" and isinstance(status, int) and status >= 500:
                five_xx += 1
            if line.get("level") in ("error", "critical"):
                errors += 1
    return five_xx, errors


def _process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class _Meters:
    """Started once the load is ready (its accounts and first certificate exist)."""

    sampler: MemorySampler
    server_cpu: CpuMeter
    machine: SystemMeter = field(default_factory=SystemMeter)
    client_cpu_s: float = 0.0
    started: float = 0.0

    def start(self) -> None:
        self.sampler.start()
        self.server_cpu.start()
        self.machine.start()
        self.client_cpu_s = _process_cpu_s()
        self.started = time.monotonic()


async def _run_load(
    load: Load, meters: _Meters, duration_s: float, say: Callable[[str], None]
) -> None:
    try:
        await load.prepare()
        meters.start()
        say(f"load running for {duration_s:.0f} s")
        tasks = [asyncio.create_task(work()) for work in load.tasks()]
        await asyncio.sleep(duration_s)
        load.stop.set()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                load.tally.add("load task", f"crashed: {result!r}")
    finally:
        await load.close()


def run_soak(
    server: Server,
    duration_s: float,
    mix: Mix | None = None,
    *,
    sample_interval_s: float = SAMPLE_INTERVAL_S,
    say: Callable[[str], None] = lambda _: None,
) -> SoakResult:
    """Run the mixed load against ``server`` for ``duration_s`` seconds (blocking)."""
    mix = mix or Mix()
    log_offset = server.log_path.stat().st_size if server.log_path is not None else 0
    meters = _Meters(
        MemorySampler(server.root_pids, sample_interval_s), CpuMeter(tree(server.root_pids))
    )
    load = Load(server, mix)
    try:
        asyncio.run(_run_load(load, meters, duration_s, say))
    finally:
        if meters.started:
            meters.sampler.stop()
    if not meters.started:
        raise RuntimeError("the load never started")
    server_5xx, server_errors = _server_log_counts(server.log_path, log_offset)
    return SoakResult(
        duration_s=duration_s,
        wall_s=time.monotonic() - meters.started,
        mix=mix,
        samples=meters.sampler.samples,
        tally=load.tally,
        requests=load.requests,
        server_5xx=server_5xx,
        server_errors=server_errors,
        server_cpu_s=meters.server_cpu.stop() / 1000.0,
        client_cpu_s=_process_cpu_s() - meters.client_cpu_s,
        machine_busy_s=meters.machine.stop() / 1000.0,
        cpus=os.cpu_count() or 1,
    )


# -- the report ------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _signed_mib(n: float) -> str:
    return ("+" if n >= 0 else "-") + _mib(abs(n))


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _outcomes(counts: Counter[str], expected: str | None) -> str:
    parts = []
    for outcome, n in counts.most_common():
        mark = "" if outcome == expected else " (unexpected)"
        parts.append(f"{outcome}: {n:,}{mark}")
    return ", ".join(parts)


def render(result: SoakResult, *, command: str, target: str) -> str:
    """docs/soak.md."""
    mix = result.mix
    capacity = result.wall_s * result.cpus
    other = max(result.machine_busy_s - result.server_cpu_s - result.client_cpu_s, 0.0)
    unexpected = result.tally.unexpected()
    minute = [
        s
        for i, s in enumerate(result.samples)
        if i == 0 or s.t // 60 != result.samples[i - 1].t // 60
    ]
    if result.samples[-1] not in minute:
        minute.append(result.samples[-1])
    half_requests = result.requests * (result.duration_s / 2) / result.wall_s
    per_request = max(result.second_half_growth, 0.0) / max(half_requests, 1.0)
    fitted = _signed_mib(result.second_half_growth)
    raw = _signed_mib(result.end_minus_middle)
    lines = [
        "# Soak",
        "",
        "Generated by `make soak` (`python -m bench.soak`, see `bench/soak.py`). Do not edit by "
        "hand: run it again.",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        f"- Command: `{command}`.",
        f"- Target: {target}; certctl {git_head()}.",
        f"- Machine: {result.cpus} CPUs, {_cpu_model()}; Linux {platform.release()}; "
        f"Python {platform.python_version()}.",
        "- The load generator (one process) and the server share this machine, and other "
        "work may have run on it too. CPU over the run, as a share of all CPUs: server "
        f"{100 * result.server_cpu_s / capacity:.0f} %, load generator "
        f"{100 * result.client_cpu_s / capacity:.0f} %, anything else "
        f"{100 * other / capacity:.0f} %.",
        "",
        "## Memory",
        "",
        "Resident memory (VmRSS) of the server's process tree, read from /proc every "
        f"{SAMPLE_INTERVAL_S:.0f} s from the moment the load started.",
        "",
        "| | RSS |",
        "|---|---:|",
        f"| start | {_mib(result.start_rss)} |",
        f"| peak | {_mib(result.peak_rss)} |",
        f"| end | {_mib(result.end_rss)} |",
        f"| growth over the second half (least-squares line) | {fitted} |",
        f"| growth over the second half (last sample minus the middle one) | {raw} |",
        "",
        "| minute | RSS | change | open descriptors |",
        "|---:|---:|---:|---:|",
        *(
            f"| {s.t / 60:.1f} | {_mib(s.rss)} | "
            f"{_signed_mib(s.rss - minute[i - 1].rss) if i else ''} | {s.fds:,} |"
            for i, s in enumerate(minute)
        ),
        "",
        f"The server answered {result.requests:,} HTTP requests, about {half_requests:,.0f} "
        "of them in the second half. Were the growth over the second half a leak per "
        f"request, it would be {per_request:,.0f} bytes per request.",
        "",
        "## Load and outcomes",
        "",
        f"All at once for {result.duration_s:.0f} s: {mix.flow_users} users doing issuance "
        f"flows back to back (newOrder, finalize, certificate download), "
        f"{mix.accounts_per_s:g} newAccount/s, {mix.gets_per_s:g} GET or HEAD/s (directory, "
        f"newNonce, /health), {mix.bad_per_s:g} refused requests/s, {mix.ocsp_per_s:g} "
        f"OCSP GETs/s about the first {mix.ocsp_certificates} certificates issued, and "
        f"connections the server has to close: {mix.idle_tls} idle after their TLS "
        f"handshake, {mix.silent_tcp} that never start one, {mix.slow_heads} slow heads, "
        f"{mix.slow_bodies} slow bodies, each reopened once the server has closed it.",
        "",
        "| kind | expected | outcomes | per second | slowest |",
        "|---|---|---|---:|---:|",
    ]
    for kind, counts in result.tally.outcomes.items():
        slowest = result.tally.max_latency_s.get(kind)
        lines.append(
            f"| {kind} | {EXPECTED.get(kind, '')} | {_outcomes(counts, EXPECTED.get(kind))} | "
            f"{result.tally.total(kind) / result.wall_s:,.1f} | "
            f"{'' if slowest is None else f'{slowest:.2f} s'} |"
        )
    server_5xx = "not read" if result.server_5xx is None else f"{result.server_5xx:,}"
    server_errors = "not read" if result.server_errors is None else f"{result.server_errors:,}"
    lines += [
        "",
        "*Slowest* is the longest answer (for connections: the time until the server closed "
        "it, which its timeouts decide). 5xx answers seen by the load: "
        f"{result.tally.five_xx():,}; in the server's access log: {server_5xx}; log lines "
        f"at level error: {server_errors}. Unexpected outcomes: "
        + (json.dumps(unexpected, sort_keys=True) if unexpected else "none")
        + ".",
        "",
    ]
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Mixed load against certctl with its memory sampled; writes docs/soak.md.",
    )
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds")
    parser.add_argument("--workers", type=int, default=1, help="certctl worker processes")
    parser.add_argument("--postgres-url", help="PostgreSQL server (default: SQLite)")
    parser.add_argument("--flow-users", type=int, default=Mix.flow_users)
    parser.add_argument("--output", default=DEFAULT_REPORT, help="report path ('-': stdout)")
    args = parser.parse_args(argv)
    mix = Mix(flow_users=args.flow_users)
    given = list(argv if argv is not None else sys.argv[1:])
    # Paths by base name and no database URL: the report shows no machine's layout.
    shown = [Path(a).name if os.sep in a else a for a in given]
    shown = ["(URL)" if "://" in a else a for a in shown]
    command = " ".join(["python -m bench.soak", *shown])
    with tempfile.TemporaryDirectory(prefix="certctl-soak-") as tmp:
        target = CertctlTarget(Path(tmp), args.workers, args.postgres_url)
        say(f"starting {target.label}")
        try:
            target.start()
        except TargetError as exc:
            say(f"{target.label} did not start: {exc}")
            return 2
        try:
            server = Server(target.directory_url, target.ca_pem, (target.pid,), target.log_path)
            result = run_soak(server, args.duration, mix, say=say)
        finally:
            target.stop()
    report = render(result, command=command, target=target.label)
    if args.output == "-":
        sys.stdout.write(report)
    else:
        Path(args.output).write_text(report)
        say(f"wrote {args.output}")
    say(
        f"RSS start {_mib(result.start_rss)}, peak {_mib(result.peak_rss)}, end "
        f"{_mib(result.end_rss)}, second half {_signed_mib(result.second_half_growth)}; "
        f"5xx {result.tally.five_xx()} (server log: {result.server_5xx}); unexpected "
        f"{result.tally.unexpected() or 'none'}"
    )
    bad = result.tally.five_xx() or result.server_5xx or result.tally.unexpected()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
