"""``python -m bench``: load certctl and Pebble side by side, write docs/performance.md.

For each run (3 by default) and each configuration (certctl on SQLite with one worker and
with several, certctl on PostgreSQL with several, Pebble), this starts a fresh server on a
free loopback port, starts the driver processes (:mod:`bench.driver`), registers one
account per virtual user, measures newAccount, warms up, runs the issuance flow at each
concurrency level, then measures directory, newNonce and OCSP with ``wrk``. Server CPU
comes from /proc (:mod:`bench.procstat`). The report takes the median over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from . import report, wrk
from .driver import (
    DriverFailure,
    PhaseCmd,
    PhaseResult,
    PrepareCmd,
    ProbeCmd,
    ProbeResult,
    Reply,
    SetupCmd,
    StopCmd,
    TargetSpec,
    driver_main,
)
from .hostspeed import host_speed_s
from .procstat import CpuMeter, SystemMeter, tree
from .targets import (
    DEFAULT_POSTGRES_URL,
    CertctlTarget,
    PebbleTarget,
    Target,
    TargetError,
    git_head,
    postgres_available,
)

LEVELS = (1, 8, 32, 64, 256)
OCSP_PREFIX = "/.well-known/pki/ocsp"
REPLY_SLACK_S = 60.0
MAX_RAMP_S = 20.0
PROBE_S = 5.0
MAX_GRACE_S = 60.0
QUIET_BUSY_PCT = 25.0  # other programs' share of the machine that counts as quiet
QUIET_SAMPLE_S = 2.0
WARMUP_USERS = 1  # Pebble 2.4.0 deadlocks under concurrent issuance: warm up with one user


# -- results ---------------------------------------------------------------------------


@dataclass
class PhaseStats:
    """One measured phase (a flow level or the newAccount phase) of one run."""

    users: int
    duration_s: float
    ops: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    stalled: bool = False
    note: str = ""
    server_cpu_ms: float = 0.0
    db_cpu_ms: float = 0.0
    driver_cpu_ms: float = 0.0
    machine_cpu_ms: float = 0.0
    pool_misses: int = 0
    skipped: str = ""  # why the phase did not run

    @property
    def rate(self) -> float:
        return self.ops / self.duration_s if self.duration_s else 0.0

    def pct(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def cpu_per_op(self) -> float | None:
        return (self.server_cpu_ms + self.db_cpu_ms) / self.ops if self.ops else None


@dataclass
class EndpointStats:
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int = 0
    socket_errors: str = ""
    server_cpu_us_per_req: float | None = None
    unavailable: str = ""  # why not measured


@dataclass
class RunStats:
    target: str
    accounts: PhaseStats | None = None
    levels: dict[int, PhaseStats] = field(default_factory=dict)
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    failure: str = ""
    background_pct: float = 0.0  # other programs' use of the machine just before the start


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100.0 * len(ordered)), 1)
    return ordered[rank - 1]


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    runs: int
    levels: tuple[int, ...]
    duration_s: float
    ramp_s: float
    grace_s: float
    warmup_s: float
    account_users: int
    account_duration_s: float
    wrk_duration_s: float
    wrk_connections: int
    wrk_threads: int
    quiet_wait_s: float
    workers: int
    driver_procs: int
    configs: tuple[str, ...]
    postgres_url: str
    output: Path
    quick: bool
    keep: bool
    command: str
    json_path: Path | None
    render_from: Path | None


CONFIGS = ("sqlite-1", "sqlite-n", "postgres-n", "pebble")


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load certctl's ACME server next to Pebble and write docs/performance.md.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run, short phases")
    parser.add_argument("--runs", type=int, help="repetitions (default 3; --quick 1)")
    parser.add_argument("--levels", help="concurrency levels (default 1,8,32,64,256)")
    parser.add_argument("--duration", type=float, help="seconds per level (default 15; quick 3)")
    parser.add_argument(
        "--ramp",
        type=float,
        help="seconds before each window (default 2, longer when flows take longer)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        help="seconds after a window before a stall (default 30, more when flows take longer)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each configuration, wait up to this many seconds for other programs to "
        f"use under {QUIET_BUSY_PCT:.0f} %% of the machine (default 60; quick 0)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up seconds (default 3; quick 1)")
    parser.add_argument("--account-users", type=int, default=32, help="newAccount concurrency")
    parser.add_argument("--account-duration", type=float, help="newAccount seconds (default 8)")
    parser.add_argument("--wrk-duration", type=float, help="wrk seconds (default 8; quick 3)")
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=max(os.cpu_count() or 2, 2),
        help="workers of the several-workers configurations (default: nproc, at least 2)",
    )
    parser.add_argument("--driver-procs", type=int, default=2, help="driver processes")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated subset of {','.join(CONFIGS)}",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CERTCTL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server for the postgres configuration (a database is created on it "
        "and dropped after; env CERTCTL_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--output", default="docs/performance.md", help="report path")
    parser.add_argument("--keep", action="store_true", help="keep work dirs and server logs")
    parser.add_argument("--json", help="also save the raw results of every run to this file")
    parser.add_argument(
        "--render", metavar="JSON", help="run nothing: render the report from saved results"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)

    def pick(value: float | None, full: float, short: float) -> float:
        return float(value) if value is not None else (short if quick else full)

    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    levels = tuple(int(v) for v in args.levels.split(",")) if args.levels else LEVELS
    shown = " ".join(["python -m bench", *_shown_args(argv if argv is not None else sys.argv[1:])])
    return Options(
        runs=args.runs if args.runs is not None else (1 if quick else 3),
        levels=levels,
        duration_s=pick(args.duration, 15.0, 2.0),
        ramp_s=pick(args.ramp, 2.0, 0.5),
        grace_s=pick(args.grace, 30.0, 20.0),
        warmup_s=pick(args.warmup, 3.0, 1.0),
        account_users=args.account_users,
        account_duration_s=pick(args.account_duration, 8.0, 2.0),
        wrk_duration_s=pick(args.wrk_duration, 8.0, 2.0),
        quiet_wait_s=pick(args.quiet_wait, 60.0, 0.0),
        wrk_connections=args.wrk_connections,
        wrk_threads=args.wrk_threads,
        workers=args.workers,
        driver_procs=max(args.driver_procs, 1),
        configs=configs,
        postgres_url=args.postgres_url,
        output=Path(args.output),
        quick=quick,
        keep=bool(args.keep),
        command=shown,
        json_path=Path(args.json) if args.json else None,
        render_from=Path(args.render) if args.render else None,
    )


_PATH_OPTIONS = ("--json", "--output", "--render")


def _shown_args(args: list[str]) -> list[str]:
    """The arguments for the report: file options by their base name (no machine paths)."""
    shown: list[str] = []
    after_path_option = False
    for arg in args:
        if after_path_option:
            shown.append(Path(arg).name)
            after_path_option = False
        elif arg in _PATH_OPTIONS:
            shown.append(arg)
            after_path_option = True
        elif arg.startswith(tuple(f"{o}=" for o in _PATH_OPTIONS)):
            option, value = arg.split("=", 1)
            shown.append(f"{option}={Path(value).name}")
        elif "://" in arg:
            shown.append("URL")  # --postgres-url: may carry a password
        else:
            shown.append(arg)
    return shown


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- driver processes ------------------------------------------------------------------


class DriverPool:
    """The driver processes of one target."""

    def __init__(self, spec: TargetSpec, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=driver_main, args=(child, spec, index), name=f"bench-driver-{index}"
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def split(self, users: int) -> list[int]:
        n = len(self.conns)
        return [users // n + (1 if i < users % n else 0) for i in range(n)]

    def ask(self, cmds: list[Any], timeout: float) -> list[Reply]:
        for conn, cmd in zip(self.conns, cmds, strict=True):
            conn.send(cmd)
        replies: list[Reply] = []
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            if not conn.poll(max(deadline - time.monotonic(), 0.0)):
                raise TimeoutError(f"a driver process did not answer within {timeout:.0f} s")
            reply: Reply = conn.recv()
            if isinstance(reply, DriverFailure):
                raise RuntimeError(f"driver failure: {reply.error}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(StopCmd())
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


# -- one target, one run -----------------------------------------------------------------


class Session:
    def __init__(self, target: Target, opts: Options) -> None:
        self.target = target
        self.opts = opts
        self.pool = DriverPool(TargetSpec(target.directory_url, target.ca_pem), opts.driver_procs)
        self.best_rate = 0.0

    def close(self) -> None:
        self.pool.close()

    def setup(self) -> None:
        users = max(*self.opts.levels, self.opts.account_users, WARMUP_USERS)
        self.pool.ask([SetupCmd(n) for n in self.pool.split(users)], timeout=300)

    def _prepare(self, ops_per_s: float, seconds: float, kind: str) -> None:
        per_proc = int(ops_per_s * seconds * 1.5 / len(self.pool.conns)) + 200
        cmd = PrepareCmd(csrs=per_proc, keys=0) if kind == "flow" else PrepareCmd(0, per_proc)
        self.pool.ask([cmd] * len(self.pool.conns), timeout=600)

    def _ramp_and_grace(self, kind: str, users: int) -> tuple[float, float]:
        """Ramp and grace long enough for the expected flow latency (Little's law).

        At high concurrency a flow takes users / rate seconds; the window must start after
        the first flows have gone through, and a slow-but-moving level is not a stall.
        """
        ramp, grace = self.opts.ramp_s, self.opts.grace_s
        if kind == "flow" and self.best_rate > 0:
            latency = users / self.best_rate
            ramp = min(max(ramp, latency), MAX_RAMP_S)
            grace = min(max(grace, 3 * latency), MAX_GRACE_S)
        return ramp, grace

    def phase(self, kind: str, users: int, duration: float, *, measure: bool = True) -> PhaseStats:
        ramp, grace = self._ramp_and_grace(kind, users)
        guess = max(self.best_rate, 300.0 if kind == "flow" else 600.0)
        self._prepare(guess, duration + ramp, kind)
        stats = PhaseStats(users=users, duration_s=duration)
        ramp_at = time.time() + 0.3
        t0 = ramp_at + ramp
        t1 = t0 + duration
        cmds = [PhaseCmd(kind, n, ramp_at, t0, t1, grace) for n in self.pool.split(users)]
        for conn, cmd in zip(self.pool.conns, cmds, strict=True):
            conn.send(cmd)
        server = CpuMeter(self.target.server_selector())
        db_selector = self.target.db_selector()
        db = CpuMeter(db_selector) if db_selector is not None else None
        drivers = CpuMeter(tree(self.pool.pids))
        machine = SystemMeter()
        _sleep_until(t0)
        for meter in (server, db, drivers, machine):
            if meter is not None:
                meter.start()
        _sleep_until(t1)
        stats.server_cpu_ms = server.stop()
        stats.db_cpu_ms = db.stop() if db is not None else 0.0
        stats.driver_cpu_ms = drivers.stop()
        stats.machine_cpu_ms = machine.stop()
        deadline = time.monotonic() + grace + REPLY_SLACK_S
        notes = []
        for conn in self.pool.conns:
            if not conn.poll(max(deadline - time.monotonic(), 0.0)):
                raise TimeoutError("a driver process did not report its phase")
            reply = conn.recv()
            if isinstance(reply, DriverFailure):
                raise RuntimeError(f"driver failure: {reply.error}")
            assert isinstance(reply, PhaseResult)
            stats.ops += reply.ops
            stats.latencies_ms.extend(reply.latencies_ms)
            stats.requests += reply.requests
            stats.pool_misses += reply.pool_misses
            for kind_, count in reply.errors.items():
                stats.errors[kind_] = stats.errors.get(kind_, 0) + count
            stats.stalled |= reply.stalled
            if reply.note:
                notes.append(reply.note)
        if users and stats.ops == 0:
            stats.stalled = True
            notes.append("no operation completed in the window")
        stats.note = "; ".join(notes)
        if measure and kind == "flow":
            self.best_rate = max(self.best_rate, stats.rate)
        return stats

    def last_certificate(self) -> str | None:
        for reply in self.pool.ask([ProbeCmd()] * len(self.pool.conns), timeout=30):
            if isinstance(reply, ProbeResult) and reply.pem:
                return reply.pem
        return None


def wait_for_quiet(limit_s: float) -> float:
    """Wait (up to ``limit_s``) until other programs use under QUIET_BUSY_PCT of the machine.

    Nothing of the benchmark runs between configurations, so the machine's busy share is
    other programs'. Returns the last share measured, in percent.
    """
    ncpu = os.cpu_count() or 1
    deadline = time.monotonic() + limit_s
    waited = False
    while True:
        meter = SystemMeter()
        meter.start()
        time.sleep(QUIET_SAMPLE_S)
        busy = meter.stop() / (QUIET_SAMPLE_S * 1000.0 * ncpu) * 100.0
        if busy < QUIET_BUSY_PCT or time.monotonic() >= deadline:
            if waited or busy >= QUIET_BUSY_PCT:
                say(f"other programs use {busy:.0f} % of the machine")
            return busy
        if not waited:
            say(f"other programs use {busy:.0f} % of the machine: waiting up to {limit_s:.0f} s")
            waited = True


def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        time.sleep(delay)


def _make_target(key: str, workdir: Path, opts: Options) -> Target:
    if key == "sqlite-1":
        return CertctlTarget(workdir, 1, None)
    if key == "sqlite-n":
        return CertctlTarget(workdir, opts.workers, None)
    if key == "postgres-n":
        return CertctlTarget(workdir, opts.workers, opts.postgres_url)
    return PebbleTarget(workdir)


def _fmt_phase(stats: PhaseStats) -> str:
    p50, p99 = stats.pct(50), stats.pct(99)
    cpu = stats.cpu_per_op()
    parts = [
        f"{stats.rate:8.1f}/s",
        f"p50 {p50:7.1f} ms" if p50 is not None else "p50     - ms",
        f"p99 {p99:7.1f} ms" if p99 is not None else "p99     - ms",
        f"cpu {cpu:6.2f} ms/op" if cpu is not None else "cpu      - ms/op",
    ]
    if stats.errors:
        parts.append(f"errors {sum(stats.errors.values())} {dict(stats.errors)}")
    if stats.stalled:
        parts.append(f"STALLED ({stats.note})")
    return "  ".join(parts)


def run_target(key: str, run_index: int, opts: Options, root: Path) -> RunStats:
    workdir = Path(tempfile.mkdtemp(prefix=f"{key}-r{run_index}-", dir=root))
    target = _make_target(key, workdir, opts)
    stats = RunStats(target=target.key)
    stats.background_pct = wait_for_quiet(opts.quiet_wait_s)
    say(f"run {run_index + 1}/{opts.runs}: starting {target.label}")
    try:
        target.start()
    except (TargetError, OSError) as exc:
        stats.failure = f"did not start: {exc}"
        say(stats.failure)
        return stats
    session: Session | None = None
    try:
        session = Session(target, opts)
        session.setup()
        stats.accounts = session.phase("account", opts.account_users, opts.account_duration_s)
        say(f"  newAccount x{opts.account_users}: {_fmt_phase(stats.accounts)}")
        session.phase("flow", WARMUP_USERS, opts.warmup_s, measure=False)
        stopped_at: int | None = None
        for users in opts.levels:
            if stopped_at is not None:
                stats.levels[users] = PhaseStats(
                    users=users, duration_s=0, skipped=f"not run: stalled at {stopped_at}"
                )
                continue
            level = session.phase("flow", users, opts.duration_s)
            stats.levels[users] = level
            say(f"  flows x{users:<3}: {_fmt_phase(level)}")
            if level.stalled:
                # The drivers cancelled their stuck users. Is the server wedged, or was it
                # only slow? One user tries for a few seconds.
                probe = session.phase("flow", 1, PROBE_S, measure=False)
                if probe.ops:
                    level.note += f"; afterwards one user still got {probe.ops} certificates"
                    level.note += f" in {PROBE_S:.0f} s (the server recovered)"
                else:
                    level.note += (
                        f"; afterwards one user got no certificate in {PROBE_S:.0f} s: "
                        "the server no longer issues, the higher levels are not run"
                    )
                    stopped_at = users
                say(f"  after the stall: {level.note}")
        pem = session.last_certificate()
        stats.endpoints = measure_endpoints(target, pem, opts)
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        stats.failure = f"{type(exc).__name__}: {exc}"
        say(f"  FAILED: {stats.failure}\n{target.log_tail()}")
    finally:
        if session is not None:
            session.close()
        target.stop()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return stats


# -- wrk endpoints -----------------------------------------------------------------------


def _ocsp_url(target: Target, pem: str | None) -> tuple[str | None, str]:
    """The OCSP URL for the last issued certificate, or (None, why not)."""
    if target.kind != "certctl":
        return None, "Pebble: no OCSP responder configured"
    if not pem:
        return None, "no certificate was issued"
    certs = x509.load_pem_x509_certificates(pem.encode())
    leaf = certs[0]
    base = target.directory_url.split("/acme/", 1)[0]
    # The responder URL the certificate itself names, when it names one under the route.
    with contextlib.suppress(x509.ExtensionNotFound):
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        for desc in aia.value:
            if desc.access_method == AuthorityInformationAccessOID.OCSP:
                url = str(desc.access_location.value)
                if OCSP_PREFIX in url:
                    # The GET form with the serial in hex (answered as a SHA-1 CertID request).
                    path = url[url.index(OCSP_PREFIX) :].rstrip("/")
                    return f"{base}{path}/{leaf.serial_number:x}", ""
    if len(certs) < 2:
        return None, "no issuing CA in the chain"
    try:
        ski = certs[1].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None, "issuing CA without a subject key identifier"
    issuer_id = "iss-" + ski.hex()[:16]
    return f"{base}{OCSP_PREFIX}/{issuer_id}/{leaf.serial_number:x}", ""


def measure_endpoints(target: Target, pem: str | None, opts: Options) -> dict[str, EndpointStats]:
    out: dict[str, EndpointStats] = {}
    if not wrk.available():
        for name in ("directory", "newNonce", "ocsp"):
            out[name] = EndpointStats(unavailable="wrk not installed")
        return out
    ctx_verify = ssl.create_default_context(cadata=target.ca_pem)
    # A server still catching up with the last level may take a while to answer.
    with httpx.Client(verify=ctx_verify, trust_env=False, timeout=60) as client:
        directory = client.get(target.directory_url).json()
        urls: dict[str, tuple[str, str]] = {
            "directory": ("GET", target.directory_url),
            "newNonce": ("HEAD", directory["newNonce"]),
            "newNonce GET": ("GET", directory["newNonce"]),
        }
        ocsp, why = _ocsp_url(target, pem)
        if ocsp is not None:
            status = client.get(ocsp).status_code
            if status == 200:
                client.get(ocsp)  # the second answer comes from the cache, if there is one
                urls["ocsp"] = ("GET", ocsp)
            else:
                out["ocsp"] = EndpointStats(unavailable=f"not available (HTTP {status})")
        else:
            out["ocsp"] = EndpointStats(unavailable=f"not available ({why})")
    if "ocsp" in out:
        say(f"  wrk ocsp: {out['ocsp'].unavailable}")
    for name, (method, url) in urls.items():
        meter = CpuMeter(target.server_selector())
        meter.start()
        result = wrk.run(url, method, opts.wrk_duration_s, opts.wrk_connections, opts.wrk_threads)
        cpu_ms = meter.stop()
        if result.error:
            out[name] = EndpointStats(unavailable=f"wrk failed: {result.error}")
        elif result.requests == 0:
            # wrk does not know a HEAD answer has no body: without Content-Length (Go's
            # net/http) it waits for one until the connection closes.
            out[name] = EndpointStats(unavailable="no answer wrk could frame")
        else:
            out[name] = EndpointStats(
                rps=result.rps,
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                non_2xx=result.non_2xx,
                socket_errors=result.socket_errors,
                server_cpu_us_per_req=cpu_ms * 1000.0 / result.requests
                if result.requests
                else None,
            )
        shown = out[name].unavailable or (
            f"{result.rps:9.0f} req/s (non-2xx {result.non_2xx}"
            + (f", socket errors {result.socket_errors}" if result.socket_errors else "")
            + ")"
        )
        say(f"  wrk {name:<12} {method:<4}: {shown}")
    return out


# -- main --------------------------------------------------------------------------------


@contextlib.contextmanager
def _workroot(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="certctl-bench-"))
    try:
        yield root
    finally:
        if keep:
            say(f"work dirs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _load(path: Path) -> tuple[dict[str, list[RunStats]], dict[str, str], dict[str, Any], float]:
    data = json.loads(path.read_text())
    results: dict[str, list[RunStats]] = {}
    for key, runs in data["results"].items():
        results[key] = [
            RunStats(
                target=r["target"],
                accounts=PhaseStats(**r["accounts"]) if r["accounts"] else None,
                levels={int(c): PhaseStats(**v) for c, v in r["levels"].items()},
                endpoints={k: EndpointStats(**v) for k, v in r["endpoints"].items()},
                failure=r["failure"],
                background_pct=r["background_pct"],
            )
            for r in runs
        ]
    options = data["options"]
    # Saved before the run's end was recorded: the file was written as the run ended.
    options.setdefault("finished_at", path.stat().st_mtime)
    return results, data["skipped"], options, float(data["elapsed_s"])


def _write_report(
    path: Path,
    results: dict[str, list[RunStats]],
    skipped: dict[str, str],
    summary: dict[str, Any],
    elapsed: float,
) -> None:
    text = report.render(results, skipped, summary, elapsed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.render_from is not None:
        saved = _load(opts.render_from)
        _write_report(opts.output, *saved)
        say(f"wrote {opts.output} from {opts.render_from}")
        return 0
    configs = list(opts.configs)
    skipped: dict[str, str] = {}
    if "postgres-n" in configs:
        why = postgres_available(opts.postgres_url)
        if why is not None:
            configs.remove("postgres-n")
            skipped["postgres-n"] = f"PostgreSQL not reachable: {why}"
            say(f"skipping PostgreSQL: {why}")
    if "pebble" in configs and shutil.which("pebble") is None:
        configs.remove("pebble")
        skipped["pebble"] = "pebble not installed (apt-get install pebble)"
        say("skipping Pebble: not installed")
    if not wrk.available():
        say("wrk not installed (apt-get install wrk): endpoint figures will be missing")
    started = time.time()
    summary = opts_summary(opts)
    summary["certctl_version"] = git_head()  # the code under test, as it was at the start
    speed_before = host_speed_s()
    results: dict[str, list[RunStats]] = {c: [] for c in configs}
    with _workroot(opts.keep) as root:
        for run_index in range(opts.runs):
            for key in configs:
                results[key].append(run_target(key, run_index, opts, root))
    summary["host_speed_s"] = [speed_before, host_speed_s()]
    summary["finished_at"] = time.time()  # the report's date, also when rendered later
    elapsed = time.time() - started
    say(f"done in {elapsed / 60:.1f} min; writing {opts.output}")
    if opts.json_path is not None:
        _save(
            opts.json_path,
            {
                "results": {k: [dataclasses.asdict(r) for r in v] for k, v in results.items()},
                "skipped": skipped,
                "options": summary,
                "elapsed_s": elapsed,
            },
        )
    _write_report(opts.output, results, skipped, summary, elapsed)
    return 0


def opts_summary(opts: Options) -> dict[str, Any]:
    return {
        "command": opts.command,
        "quick": opts.quick,
        "runs": opts.runs,
        "levels": opts.levels,
        "duration_s": opts.duration_s,
        "ramp_s": opts.ramp_s,
        "grace_s": opts.grace_s,
        "warmup_s": opts.warmup_s,
        "account_users": opts.account_users,
        "account_duration_s": opts.account_duration_s,
        "wrk_duration_s": opts.wrk_duration_s,
        "wrk_connections": opts.wrk_connections,
        "wrk_threads": opts.wrk_threads,
        "quiet_wait_s": opts.quiet_wait_s,
        "workers": opts.workers,
        "driver_procs": opts.driver_procs,
        "postgres_url": opts.postgres_url,
    }
