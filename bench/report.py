"""Render docs/performance.md from the runs' results (medians over runs)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .hostspeed import HOST_SPEED_LOOP
from .targets import dpkg_version, git_head, postgres_version

if TYPE_CHECKING:
    from .run import EndpointStats, PhaseStats, RunStats

LABELS = {
    "sqlite-1": "certctl, SQLite, 1 worker",
    "sqlite-n": "certctl, SQLite, {w} workers",
    "postgres-n": "certctl, PostgreSQL, {w} workers",
    "pebble": "Pebble",
}
COMPARE_AT = 32
CONTENDED_PCT = 15.0
TARGETS = {
    "sqlite_cpu_ms": 3.5,
    "postgres_cpu_ms": 5.0,
    "directory_rps": 20_000.0,
    "nonce_rps": 20_000.0,
    "ocsp_rps": 10_000.0,
}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def _label(key: str, workers: int) -> str:
    return LABELS.get(key, key).format(w=workers)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


class Level:
    """The medians of one concurrency level of one configuration over the runs."""

    def __init__(self, phases: list[PhaseStats], ncpu: int) -> None:
        self.ran = [p for p in phases if not p.skipped]
        self.skipped = [p.skipped for p in phases if p.skipped]
        self.stalls = sum(1 for p in self.ran if p.stalled)
        good = [p for p in self.ran if not p.stalled]
        self.good = good
        self.errors: dict[str, int] = {}
        for p in self.ran:
            for kind, count in p.errors.items():
                self.errors[kind] = self.errors.get(kind, 0) + count
        self.rate = _median([p.rate for p in good])
        self.p50 = _median([p.pct(50) for p in good])
        self.p95 = _median([p.pct(95) for p in good])
        self.p99 = _median([p.pct(99) for p in good])
        self.cpu = _median([p.cpu_per_op() for p in good])
        self.server_cpu = _median([p.server_cpu_ms / p.ops if p.ops else None for p in good])
        self.db_cpu = _median([p.db_cpu_ms / p.ops if p.ops else None for p in good])
        self.driver_cpu = _median([p.driver_cpu_ms / p.ops if p.ops else None for p in good])
        self.requests = _median([p.requests / p.ops if p.ops else None for p in good])
        self.busy = _median(
            [p.machine_cpu_ms / (p.duration_s * 1000.0 * ncpu) * 100 for p in good if p.duration_s]
        )
        self.outside = _median(
            [
                max(p.machine_cpu_ms - p.server_cpu_ms - p.db_cpu_ms - p.driver_cpu_ms, 0.0)
                / (p.duration_s * 1000.0 * ncpu)
                * 100
                for p in good
                if p.duration_s
            ]
        )
        self.misses = sum(p.pool_misses for p in self.ran)
        self.notes = sorted({p.note for p in self.ran if p.note})

    @property
    def usable(self) -> bool:
        return self.rate is not None


def _levels(runs: list[RunStats], levels: Sequence[int], ncpu: int) -> dict[int, Level]:
    return {c: Level([r.levels[c] for r in runs if c in r.levels], ncpu) for c in levels}


def _errors_text(level: Level) -> str:
    if not level.errors:
        return "0"
    total = sum(level.errors.values())
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(level.errors.items(), key=lambda kv: -kv[1]))
    return f"{total} ({kinds})"


def _flow_table(key: str, levels: dict[int, Level], nruns: int, pg: bool) -> list[str]:
    head = "| concurrency | flows/s | p50 ms | p95 ms | p99 ms | server CPU ms/cert |"
    sep = "|---:|---:|---:|---:|---:|---:|"
    if pg:
        head += " of which PostgreSQL |"
        sep += "---:|"
    head += " driver CPU ms/flow | requests/flow | machine busy % (other %) | errors | stalls |"
    sep += "---:|---:|---:|---|---|"
    lines = [head, sep]
    for users, lv in levels.items():
        if not lv.ran:
            why = lv.skipped[0] if lv.skipped else "not run"
            cols = 10 if pg else 9
            lines.append(f"| {users} | {why} |" + " |" * (cols - 1))
            continue
        stall = f"{lv.stalls}/{len(lv.ran)}" if lv.stalls else "0"
        if lv.skipped:
            stall += f" (+{len(lv.skipped)} not run)"
        row = [
            str(users),
            _f(lv.rate),
            _f(lv.p50),
            _f(lv.p95),
            _f(lv.p99),
            _f(lv.cpu, 2),
        ]
        if pg:
            row.append(_f(lv.db_cpu, 2))
        row += [
            _f(lv.driver_cpu, 2),
            _f(lv.requests, 1),
            f"{_f(lv.busy, 0)} ({_f(lv.outside, 0)})",
            _errors_text(lv),
            stall,
        ]
        lines.append("| " + " | ".join(row) + " |")
    notes = [n for lv in levels.values() for n in lv.notes]
    for note in sorted(set(notes)):
        lines.append("")
        lines.append(f"Stall: {note}.")
    misses = sum(lv.misses for lv in levels.values())
    if misses:
        lines.append("")
        lines.append(
            f"The driver's CSR pool ran dry {misses} times over {nruns} runs "
            "(those CSRs were made inside the timed window)."
        )
    return lines


def _endpoint_median(runs: list[RunStats], name: str) -> tuple[EndpointStats | None, str]:
    got = [r.endpoints[name] for r in runs if name in r.endpoints]
    measured = [e for e in got if not e.unavailable]
    if not measured:
        why = got[0].unavailable if got else "not measured"
        return None, why
    from .run import EndpointStats  # noqa: PLC0415 -- run imports this module

    med = EndpointStats(
        rps=statistics.median(e.rps for e in measured),
        p50_ms=_median([e.p50_ms for e in measured]),
        p99_ms=_median([e.p99_ms for e in measured]),
        non_2xx=sum(e.non_2xx for e in measured),
        socket_errors="; ".join(sorted({e.socket_errors for e in measured if e.socket_errors})),
        server_cpu_us_per_req=_median([e.server_cpu_us_per_req for e in measured]),
    )
    return med, ""


class _Report:
    """The report's sections, one method each, sharing the aggregated results."""

    def __init__(
        self,
        results: dict[str, list[RunStats]],
        skipped: dict[str, str],
        opts: dict[str, Any],
        elapsed_s: float,
    ) -> None:
        self.results = results
        self.skipped = skipped
        self.opts = opts
        self.elapsed_s = elapsed_s
        self.ncpu = os.cpu_count() or 1
        self.workers = int(opts["workers"])
        self.levels_cfg: tuple[int, ...] = tuple(opts["levels"])
        self.nruns = int(opts["runs"])
        self.per_config = {
            key: _levels(runs, self.levels_cfg, self.ncpu) for key, runs in results.items()
        }
        self.pebble = self.per_config.get("pebble")
        self.pg_url = str(opts["postgres_url"])
        self.out: list[str] = []

    def add(self, line: str) -> None:
        self.out.append(line)

    def row(self, *cells: str) -> None:
        self.out.append("| " + " | ".join(cells) + " |")

    def label(self, key: str) -> str:
        return _label(key, self.workers)

    def level_at(self, key: str, users: int) -> Level | None:
        lv = self.per_config.get(key, {}).get(users)
        return lv if lv is not None and lv.usable else None

    def render(self) -> str:
        self.add("# Performance")
        self.add("")
        for section in (
            self.header,
            self.targets,
            self.flows,
            self.against_pebble,
            self.accounts,
            self.endpoints,
            self.method,
        ):
            section()
        return "\n".join(self.out)

    def header(self) -> None:
        self.add(
            "Generated by `make bench` (the load driver in `bench/`, run as `python -m bench`). "
            "Do not edit by hand: run it again."
        )
        self.add("")
        mode = (
            "**quick smoke run**: short phases, one run; figures are indicative only"
            if self.opts["quick"]
            else f"full run, medians of {self.nruns} runs"
        )
        finished = self.opts.get("finished_at")
        when = time.gmtime(float(finished) if finished is not None else None)
        self.add(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', when)} ({mode}).")
        self.add(f"- Command: `{self.opts['command']}` ({self.elapsed_s / 60:.0f} min).")
        self.add(
            f"- Machine: {self.ncpu} CPUs (`nproc`), {_cpu_model()}; Linux {platform.release()}; "
            f"Python {platform.python_version()}."
        )
        certctl_version = ""
        if any(k != "pebble" for k in self.results):
            certctl_version = str(self.opts.get("certctl_version") or git_head())
        versions = [f"certctl {certctl_version}" if certctl_version else ""]
        if "pebble" in self.results:
            versions.append(f"Pebble {dpkg_version('pebble')} (Debian)")
        if "postgres-n" in self.results:
            versions.append(f"PostgreSQL {postgres_version(self.pg_url)}")
        versions.append(_wrk_version())
        self.add(f"- Software: {', '.join(v for v in versions if v)}.")
        speed = self.opts.get("host_speed_s")
        if speed:
            self.add(
                f"- Host speed: a fixed pure-Python loop ({HOST_SPEED_LOOP:,} additions, best "
                f"of 3) took {speed[0]:.3f} s at the start and {speed[-1]:.3f} s at the end. "
                "The host's speed drifts by the hour: compare absolute figures of two reports "
                "only when these agree."
            )
        self.add(
            "- Everything runs on this one machine: the server under test, its database, the "
            "driver processes and `wrk` share the same CPUs. Quote ratios and medians, not "
            "absolute figures."
        )
        other = _median(
            [lv.outside for levels in self.per_config.values() for lv in levels.values()]
        )
        if other is not None and other > CONTENDED_PCT:
            self.add(
                f"- **The machine was shared**: other programs (not the server, its database or "
                f"the driver) used a median {other:.0f} % of its CPU during the measured "
                "windows (column *other* below). Rates and latencies are depressed by that "
                "and vary from run to run; CPU per certificate is the robust figure, and the "
                "ratios against Pebble, measured under the same conditions, come next."
            )
        self.add("")

    def targets(self) -> None:
        self.add("## Targets")
        self.add("")
        self.add(
            "From the performance issue; CPU per certificate and flows/s are taken at "
            f"concurrency {COMPARE_AT}."
        )
        self.add("")
        self.add("| target | goal | measured | met |")
        self.add("|---|---|---|---|")

        for key in ("sqlite-1", "sqlite-n"):
            lv = self.level_at(key, COMPARE_AT)
            if key in self.per_config:
                goal = TARGETS["sqlite_cpu_ms"]
                got = lv.cpu if lv else None
                self.row(
                    f"server CPU per certificate, {self.label(key)}",
                    f"≤ {goal} ms",
                    f"{_f(got, 2)} ms",
                    _met(got, goal, lower=True),
                )
        if "postgres-n" in self.per_config:
            lv = self.level_at("postgres-n", COMPARE_AT)
            goal = TARGETS["postgres_cpu_ms"]
            got = lv.cpu if lv else None
            self.row(
                f"server + PostgreSQL CPU per certificate, {self.label('postgres-n')}",
                f"≤ {goal} ms",
                f"{_f(got, 2)} ms",
                _met(got, goal, lower=True),
            )
        cmp_level = _pebble_compare_level(self.pebble)
        for key in (k for k in self.per_config if k != "pebble"):
            mine = self.level_at(key, cmp_level) if cmp_level else None
            theirs = self.level_at("pebble", cmp_level) if cmp_level else None
            where = f"at concurrency {cmp_level}" if cmp_level else ""
            if cmp_level != COMPARE_AT and self.pebble is not None:
                where += f" (Pebble has no figure at {COMPARE_AT})"
            if mine and theirs and mine.rate is not None and theirs.rate is not None:
                self.row(
                    f"flows/s ≥ Pebble's, {self.label(key)}",
                    "≥ 1.00x",
                    f"{_ratio(mine.rate, theirs.rate)} {where}",
                    "yes" if mine.rate >= theirs.rate else "no",
                )
                if mine.p99 is not None and theirs.p99 is not None:
                    self.add(
                        f"| p99 no worse than Pebble's, {self.label(key)} | ≤ 1.00x | "
                        f"{_ratio(mine.p99, theirs.p99)} {where} | "
                        f"{'yes' if mine.p99 <= theirs.p99 else 'no'} |"
                    )
            else:
                self.row(
                    f"flows/s and p99 against Pebble, {self.label(key)}",
                    "",
                    "no comparable level",
                    "n/a",
                )
        top = max(self.levels_cfg)
        for key in (k for k in self.per_config if k != "pebble"):
            lv = self.per_config[key].get(top)
            if lv is None or not lv.ran:
                self.add(f"| no stall or error at {top}, {self.label(key)} | none | not run | no |")
                continue
            nerr = sum(lv.errors.values())
            ok = nerr == 0 and lv.stalls == 0
            self.add(
                f"| no stall or error at {top}, {self.label(key)} | none | {lv.stalls} stalls, "
                f"{nerr} errors in {len(lv.ran)} runs | {'yes' if ok else 'no'} |"
            )
        for key in (k for k in self.per_config if k != "pebble"):
            for name, goal_key, what in (
                ("directory", "directory_rps", "directory (GET)"),
                ("newNonce", "nonce_rps", "newNonce (HEAD)"),
                ("ocsp", "ocsp_rps", "cached OCSP (GET)"),
            ):
                med, why = _endpoint_median(self.results[key], name)
                goal = TARGETS[goal_key]
                if med is None:
                    self.add(f"| {what}, {self.label(key)} | ≥ {goal:,.0f} req/s | {why} | n/a |")
                else:
                    self.row(
                        f"{what}, {self.label(key)}",
                        f"≥ {goal:,.0f} req/s",
                        f"{med.rps:,.0f} req/s",
                        _met(med.rps, goal, lower=False),
                    )
        self.add("")

    def flows(self) -> None:
        self.add("## Issuance flows")
        self.add("")
        self.add(
            "A flow is one certificate for one new DNS name with the virtual user's existing "
            "account, from newOrder to the downloaded chain (for Pebble: plus fetching the "
            "authorization, answering its http-01 challenge and polling). Latency is per flow. "
            "*Server CPU ms/cert* is the CPU time (user + system, from /proc) of the server's "
            "processes during the window, plus the database server's for PostgreSQL, divided by "
            "the certificates issued in it. *Machine busy* is the whole machine's CPU use over "
            f"the window ({self.ncpu} CPUs = 100 %); *other* is the part used by none of the "
            "server, the database and the driver (other programs on the machine). A stall is a "
            "level where virtual users were still inside a flow "
            f"{_f(float(self.opts['grace_s']), 0)} s after the window, or that completed nothing."
        )
        self.add("")
        for key, levels in self.per_config.items():
            self.add(f"### {self.label(key)}")
            self.add("")
            failures = [r.failure for r in self.results[key] if r.failure]
            for failure in failures:
                self.add(f"A run failed: {failure.splitlines()[0]}")
                self.add("")
            self.out.extend(_flow_table(key, levels, self.nruns, pg=key == "postgres-n"))
            self.add("")

    def against_pebble(self) -> None:
        if self.pebble is not None:
            self.add("## Against Pebble")
            self.add("")
            survived = [c for c, lv in self.pebble.items() if lv.usable]
            stalled = [c for c, lv in self.pebble.items() if lv.stalls]
            if not stalled:
                self.add(
                    f"Pebble {dpkg_version('pebble')} did not stall at any level in these runs "
                    "(the performance issue expects Debian's 2.4.0 to deadlock under concurrent "
                    "issuance from concurrency 8; it did not happen here)."
                )
                self.add("")
            if stalled:
                first = min(stalled)
                runs_stalled = self.pebble[first].stalls
                figures = (
                    f"Ratios are given where Pebble has figures ({', '.join(map(str, survived))})."
                    if survived
                    else "Pebble has no figure at any level."
                )
                self.add(
                    f"Pebble {dpkg_version('pebble')} stalled at concurrency {first} in "
                    f"{runs_stalled} of {len(self.pebble[first].ran)} runs (the performance "
                    "issue traces Debian's 2.4.0 deadlocking under concurrent issuance to a "
                    "lock-order inversion in its in-memory store; see the stall notes under "
                    "its table for whether it still issued afterwards). " + figures
                )
                self.add("")
            self.add(
                "certctl ÷ Pebble at the same concurrency (flows/s above 1 is better; p99 and "
                "CPU below 1 are better). Pebble signs with RSA-2048, certctl with ECDSA P-256; "
                "Pebble keeps everything in memory; a Pebble flow takes more requests (the "
                "challenge and polls)."
            )
            self.add("")
            self.add("| configuration | concurrency | flows/s | p99 | CPU per certificate |")
            self.add("|---|---:|---:|---:|---:|")
            for key, levels in self.per_config.items():
                if key == "pebble":
                    continue
                for users in survived:
                    mine, theirs = levels.get(users), self.pebble[users]
                    if mine is None or not mine.usable:
                        continue
                    self.add(
                        f"| {self.label(key)} | {users} | {_ratio(mine.rate, theirs.rate)} | "
                        f"{_ratio(mine.p99, theirs.p99)} | {_ratio(mine.cpu, theirs.cpu)} |"
                    )
            self.add("")

    def accounts(self) -> None:
        self.add("## newAccount")
        self.add("")
        self.add(
            f"{self.opts['account_users']} virtual users each registering a fresh P-256 key "
            f"(pre-generated) for {_f(float(self.opts['account_duration_s']), 0)} s."
        )
        self.add("")
        self.add(
            "| configuration | accounts/s | p50 ms | p99 ms | server CPU ms/account | errors |"
        )
        self.add("|---|---:|---:|---:|---:|---|")
        for key, runs in self.results.items():
            acc = [r.accounts for r in runs if r.accounts is not None]
            lv = Level(acc, self.ncpu)
            if not lv.ran:
                self.add(f"| {self.label(key)} | not run | | | | |")
                continue
            self.row(
                self.label(key),
                _f(lv.rate),
                _f(lv.p50),
                _f(lv.p99),
                _f(lv.cpu, 2),
                _errors_text(lv) + (" (stalled)" if lv.stalls else ""),
            )
        self.add("")

    def endpoints(self) -> None:
        self.add("## Directory, newNonce and OCSP (wrk)")
        self.add("")
        self.add(
            f"`wrk -t{self.opts['wrk_threads']} -c{self.opts['wrk_connections']} "
            f"-d{_f(float(self.opts['wrk_duration_s']), 0)}s` over HTTPS (keep-alive) against each "
            "endpoint; newNonce with HEAD. OCSP is the GET form for the last certificate issued "
            f"(`/.well-known/pki/ocsp/<issuer-id>/<serial>`), asked once before so the answer is "
            "cached. `wrk` itself runs on the same CPUs."
        )
        self.add("")
        self.add(
            "| configuration | endpoint | req/s | p50 ms | p99 ms | server CPU µs/req | non-2xx |"
        )
        self.add("|---|---|---:|---:|---:|---:|---|")
        for key, runs in self.results.items():
            for name in ("directory", "newNonce", "newNonce GET", "ocsp"):
                med, why = _endpoint_median(runs, name)
                if med is None:
                    self.add(f"| {self.label(key)} | {name} | {why} | | | | |")
                    continue
                errs = str(med.non_2xx)
                if med.socket_errors:
                    errs += f"; socket errors: {med.socket_errors}"
                self.add(
                    f"| {self.label(key)} | {name} | {med.rps:,.0f} | {_f(med.p50_ms, 2)} | "
                    f"{_f(med.p99_ms, 2)} | {_f(med.server_cpu_us_per_req, 0)} | {errs} |"
                )
        self.add("")

    def method(self) -> None:
        o = self.opts
        self.add("## Method")
        self.add("")
        self.add(
            "- Each run starts every configuration afresh on a free loopback port: certctl "
            "with a new data directory (`certctl serve --workers N`, default settings "
            "otherwise, logs at INFO), on PostgreSQL with a new database created for the run "
            "and dropped after; Pebble from Debian with `PEBBLE_VA_ALWAYS_VALID=1 "
            "PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0` and a generated TLS certificate. "
            "Configurations are interleaved within each run so drift hits them alike."
        )
        self.add(
            f"- The driver (`bench/driver.py`) runs in {o['driver_procs']} processes, each "
            "one asyncio loop; each virtual user has a connection of its own, as each ACME "
            "client process does (an `httpx.AsyncClient` of one HTTP/1.1 keep-alive "
            "connection, verifying the server's chain). Requests are flattened JWS signed "
            "with ES256; each takes its "
            "nonce from the previous response's `Replay-Nonce`, a `badNonce` is retried once. "
            "Each virtual user has its own account, registered before the timed phases. CSRs "
            "(fresh P-256 key each) are generated before each level, outside the timed window."
        )
        levels = ", ".join(map(str, self.levels_cfg))
        self.add(
            f"- Each level: users start over a {_f(float(o['ramp_s']), 0)} s ramp, then a "
            f"{_f(float(o['duration_s']), 0)} s window; flows completed inside the window "
            "count for rate and latency, and CPU is sampled from /proc over the same window. "
            f"Levels: {levels}; a {_f(float(o['warmup_s']), 0)} s warm-up at concurrency 1 "
            "comes first. Pebble polls run every 10 ms."
        )
        self.add(
            "- Server CPU: the `certctl serve` process and its workers (its whole process "
            "tree) or the `pebble` process; for PostgreSQL also the postmaster, the cluster's "
            "background processes and the backends of the benchmark's database (other "
            "databases' backends are left out)."
        )
        self.add(
            "- certctl runs with its rate limits turned off (`CERTCTL_PKI_RATE_LIMIT_PER_SECOND=0`"
            " and `CERTCTL_ACME_SERVER_RATE_LIMIT_*=0`): the whole load comes from one address."
            " Everything else is as it ships: on SQLite every commit is on the disk before"
            " an answer that depends on it leaves (`CERTCTL_SQLITE_SYNCHRONOUS=FULL`): each"
            " worker syncs its commits in groups, one fdatasync of the WAL for the commits"
            " made meanwhile, and answers the issuance POSTs on its event loop (with two"
            " workers every answer waits for a sync of its own); Pebble keeps everything in"
            " memory and syncs nothing."
        )
        self.add(
            "- The ramp grows to the expected flow latency (users ÷ best rate so far, at most "
            "20 s) and the stall grace to three times it (at most 60 s). After a stall one "
            "user tries for 5 s: if it gets no certificate the server is taken as wedged and "
            "the higher levels of that run are skipped."
        )
        if float(o["quiet_wait_s"]) > 0:
            self.add(
                f"- Before each configuration the runner waits up to "
                f"{_f(float(o['quiet_wait_s']), 0)} s for other programs to use under 25 % "
                "of the machine."
            )
        self.add(
            "- A request counts as an error (`timeout`) when it gets no answer within 60 s; "
            "errors the server answers are counted by status and problem type."
        )
        self.add("- Medians over runs of each run's figures; errors are summed over runs.")
        if self.skipped:
            self.add("")
            for key, why in self.skipped.items():
                self.add(f"- Not measured: {self.label(key)}: {why}.")
        self.add("")


def render(
    results: dict[str, list[RunStats]],
    skipped: dict[str, str],
    opts: dict[str, Any],
    elapsed_s: float,
) -> str:
    return _Report(results, skipped, opts, elapsed_s).render()


def _met(got: float | None, goal: float, *, lower: bool) -> str:
    if got is None:
        return "n/a"
    return "yes" if (got <= goal if lower else got >= goal) else "no"


def _pebble_compare_level(pebble: dict[int, Level] | None) -> int | None:
    """COMPARE_AT if Pebble has a figure there, else its highest level with one."""
    if pebble is None:
        return COMPARE_AT
    if COMPARE_AT in pebble and pebble[COMPARE_AT].usable:
        return COMPARE_AT
    usable = [c for c, lv in pebble.items() if lv.usable]
    return max(usable) if usable else None
