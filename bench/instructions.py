"""``python -m bench.instructions``: instructions per request under callgrind.

Wall-clock and CPU-time figures (``python -m bench``) move with whatever else the machine
is doing; an instruction count does not. This runs one ``certctl serve`` (SQLite, one
worker) under ``valgrind --tool=callgrind`` with instrumentation off, makes a few
untimed warm-up requests, switches instrumentation on (``callgrind_control -i on``), makes
``N`` sequential requests of each kind from this process over HTTPS keep-alive, and
divides. Kernel work (system calls, TLS sockets) is not counted: callgrind sees user space
only. The same build on the same inputs gives the same figure to within about 2 %, so a
change to the hot path can be judged by it on any machine, busy or not.

Kinds: ``issuance`` (new-order, finalize with a fresh P-256 CSR, certificate download:
the flow ``make bench`` times, with an existing account), ``issuance-postgres`` (the same
on PostgreSQL, in a database created for the run and dropped after: only with
``--postgres-url``; the database server's own work is not counted), ``new-nonce`` (HEAD)
and ``directory`` (GET). Writes docs/instructions.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from .jose import AccountKey, b64u, dumps, make_csr
from .targets import (
    CERTCTL_ENV,
    HOST,
    CertctlTarget,
    _scrubbed_env,
    create_database,
    drop_database,
    free_port,
    git_head,
    postgres_available,
)

KINDS = ("issuance", "issuance-postgres", "new-nonce", "directory")
DEFAULT_COUNTS = {"issuance": 40, "issuance-postgres": 40, "new-nonce": 1000, "directory": 1000}
WARMUP = {"issuance": 5, "issuance-postgres": 5, "new-nonce": 50, "directory": 50}
START_TIMEOUT_S = 600.0  # Python under valgrind starts slowly
HTTP_TIMEOUT_S = 120.0
JOSE = {"Content-Type": "application/jose+json"}
# callgrind_annotate: "  12,345 (12.34%)  file:function [object]"; functions inlined from
# a header are listed without their object.
_ANNOTATE_LINE = re.compile(
    r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(?P<loc>\S.*?)(?:\s+\[(?P<obj>[^\]]+)\])?\s*$"
)
_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)")


def say(msg: str) -> None:
    print(f"[instructions {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} not found: apt-get install valgrind")


class Client:
    """One ACME account over one keep-alive HTTPS connection."""

    def __init__(self, base: str, ca_file: Path) -> None:
        self.base = base
        self.http = httpx.Client(verify=str(ca_file), timeout=HTTP_TIMEOUT_S)
        self.directory: dict[str, str] = {}
        self.key = AccountKey()
        self.kid: str | None = None
        self.nonce = ""
        self.seq = 0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                resp = self.http.get(f"{self.base}/acme/directory")
                if resp.status_code == 200:
                    self.directory = resp.json()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise SystemExit("certctl did not answer under valgrind")

    def post(self, url: str, payload: object | None, *, jwk: bool = False) -> httpx.Response:
        if not self.nonce:
            self.nonce = self.http.head(self.directory["newNonce"]).headers["replay-nonce"]
        body = self.key.sign(
            url, self.nonce, None if payload is None else dumps(payload), None if jwk else self.kid
        )
        resp = self.http.post(url, content=body, headers=JOSE)
        self.nonce = resp.headers.get("replay-nonce", "")
        if resp.status_code >= 400:
            raise SystemExit(f"{url}: {resp.status_code} {resp.text[:300]}")
        return resp

    def register(self) -> None:
        resp = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True}, jwk=True)
        self.kid = resp.headers["location"]

    def issuance(self) -> None:
        self.seq += 1
        name = f"i{self.seq}.instructions.example.com"
        csr = make_csr(name)
        ident = {"identifiers": [{"type": "dns", "value": name}]}
        order = self.post(self.directory["newOrder"], ident).json()
        if order["status"] != "ready":
            raise SystemExit(f"order {order['status']}, not ready")
        order = self.post(order["finalize"], {"csr": b64u(csr)}).json()
        if order["status"] != "valid":
            raise SystemExit(f"finalized order {order['status']}, not valid")
        if "BEGIN CERTIFICATE" not in self.post(order["certificate"], None).text:
            raise SystemExit("certificate download without PEM")

    def new_nonce(self) -> None:
        if self.http.head(self.directory["newNonce"]).status_code != 200:
            raise SystemExit("newNonce did not answer 200")

    def get_directory(self) -> None:
        if self.http.get(f"{self.base}/acme/directory").status_code != 200:
            raise SystemExit("directory did not answer 200")


def _by_object(out: Path) -> tuple[int, Counter[str]]:
    """Total instructions and their split by shared object (self cost)."""
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        if match := _TOTALS.match(line):
            total = max(total, int(match.group(1)))
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    split: Counter[str] = Counter()
    for line in text.splitlines():
        match = _ANNOTATE_LINE.match(line)
        if match is None or match.group("loc") == "PROGRAM TOTALS":
            continue
        # Without an object, CPython's own sources (inlined from its headers) say whose.
        obj = match.group("obj") or _inlined_object(match.group("loc"))
        split[_object_label(obj)] += int(match.group(1).replace(",", ""))
    return total, split


def _inlined_object(location: str) -> str:
    cpython = ("/Include/", "/Objects/", "/Python/", "/Modules/", "/Parser/")
    return "libpython" if any(part in location for part in cpython) else location


def _object_label(path: str) -> str:
    name = Path(path).name
    if name.startswith("libpython"):
        return "Python interpreter"
    if name.startswith("_rust.abi3"):
        return "cryptography (Rust, OpenSSL)"
    if name.startswith(("libsqlite3", "_sqlite3")):
        return "SQLite"
    if name.startswith(("libssl", "libcrypto", "_ssl")):
        return "OpenSSL (TLS)"
    if name.startswith("libc.") or name.startswith("ld-linux"):
        return "C library"
    if "sqlalchemy" in path:
        return "SQLAlchemy (compiled parts)"
    if "uvloop" in path or "httptools" in path:
        return "uvloop, httptools"
    if name.startswith("libpq") or "psycopg" in path:
        return "libpq, psycopg (compiled parts)"
    return "other"


def _instrument(pid: int, state: str) -> None:
    """Switch callgrind's instrumentation of ``pid`` on or off."""
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True)


def measure(
    kind: str, count: int, workdir: Path, postgres_url: str | None = None
) -> tuple[float, dict[str, float]]:
    """Instructions per request of ``kind``, in millions, and its split by object."""
    if kind != "issuance-postgres":
        return _measure(kind, count, workdir, {})
    if postgres_url is None:
        raise ValueError("issuance-postgres needs a PostgreSQL server (--postgres-url)")
    database, url = create_database(postgres_url, "certctl_instructions")
    try:
        return _measure(kind, count, workdir, {"CERTCTL_DATABASE_URL": url})
    finally:
        drop_database(postgres_url, database)


def _measure(
    kind: str, count: int, workdir: Path, extra_env: dict[str, str]
) -> tuple[float, dict[str, float]]:
    data_dir = workdir / kind
    env = _scrubbed_env()
    env.update(CERTCTL_ENV)
    env.update(extra_env)
    certctl = CertctlTarget.executable()
    # The first start creates the CA and migrates: done outside valgrind.
    root = subprocess.run(
        [certctl, "ca", "root", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    ca_file = workdir / f"{kind}-ca.pem"
    ca_file.write_text(root)
    port = free_port()
    out = workdir / f"{kind}.callgrind"
    log = (workdir / f"{kind}.log").open("w")
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    cmd += [f"--callgrind-out-file={out}", sys.executable, certctl, "serve"]
    cmd += ["--data-dir", str(data_dir), "--listen", f"{HOST}:{port}", "--workers", "1"]
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = Client(f"https://{HOST}:{port}", ca_file)
        client.wait_ready()
        if kind.startswith("issuance"):
            client.register()
        step: Callable[[], None] = {
            "issuance": client.issuance,
            "issuance-postgres": client.issuance,
            "new-nonce": client.new_nonce,
            "directory": client.get_directory,
        }[kind]
        for _ in range(WARMUP[kind]):
            step()
        _instrument(server.pid, "on")
        for _ in range(count):
            step()
        _instrument(server.pid, "off")
    finally:
        server.terminate()
        server.wait(timeout=300)
        log.close()
    total, split = _by_object(out)
    return total / count / 1e6, {k: v / count / 1e6 for k, v in split.items()}


def _valgrind_version() -> str:
    try:
        done = subprocess.run(
            ["valgrind", "--version"], check=False, capture_output=True, text=True
        )
    except OSError:
        return "valgrind not found"
    return done.stdout.strip() or "valgrind"


def render(results: dict[str, tuple[float, dict[str, float]]], counts: dict[str, int]) -> str:
    lines = [
        "# Instructions per request",
        "",
        "Generated by `make bench-instructions` (`python -m bench.instructions`, see "
        "`bench/instructions.py`). Do not edit by hand: run it again.",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        f"- Software: certctl {git_head()}; Python {platform.python_version()}; "
        f"{_valgrind_version()}.",
        "- certctl on SQLite (PostgreSQL for issuance-postgres), one worker, under "
        "`valgrind --tool=callgrind`; requests one at "
        "a time over one HTTPS keep-alive connection, after an untimed warm-up. User-space "
        "instructions of the server process only (all its threads); the kernel's share "
        "(system calls, sockets) is not counted, nor is the PostgreSQL server's. Repeatable "
        "to about 2 % on the same build.",
        "",
        "| request | count | million instructions per request |",
        "|---|---:|---:|",
    ]
    for kind, (per, _) in results.items():
        lines.append(f"| {kind} | {counts[kind]} | {per:.3f} |")
    lines += ["", "## Where the instructions go", ""]
    lines += ["Self cost by shared object, million instructions per request.", ""]
    objects = sorted({o for _, split in results.values() for o in split})
    lines.append("| object | " + " | ".join(results) + " |")
    lines.append("|---|" + "---:|" * len(results))
    for obj in sorted(objects, key=lambda o: -sum(s.get(o, 0.0) for _, s in results.values())):
        cells = " | ".join(f"{split.get(obj, 0.0):.3f}" for _, split in results.values())
        lines.append(f"| {obj} | {cells} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description="Count the instructions certctl spends per request under callgrind "
        "and write docs/instructions.md.",
    )
    parser.add_argument("--kinds", help=f"of {', '.join(KINDS)} (default: all it can run)")
    parser.add_argument(
        "--count", type=int, help="requests of each kind (default 40 flows, 1000 others)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CERTCTL_BENCH_POSTGRES_URL"),
        help="PostgreSQL server for issuance-postgres, which runs only with it (env "
        "CERTCTL_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--output", type=Path, default=Path("docs/instructions.md"))
    parser.add_argument("--no-write", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    default = [k for k in KINDS if args.postgres_url or k != "issuance-postgres"]
    kinds = [k for k in args.kinds.split(",") if k] if args.kinds else default
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind {', '.join(unknown)}")
    if "issuance-postgres" in kinds and not args.postgres_url:
        parser.error("issuance-postgres needs --postgres-url")
    if "issuance-postgres" in kinds:
        why = postgres_available(args.postgres_url)
        if why is not None:
            parser.error(f"PostgreSQL at --postgres-url does not answer: {why}")
    _require("valgrind")
    _require("callgrind_control")
    counts = {k: args.count or DEFAULT_COUNTS[k] for k in kinds}
    results: dict[str, tuple[float, dict[str, float]]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="certctl-instructions-"))
    try:
        for kind in kinds:
            say(f"{kind}: {counts[kind]} requests under callgrind")
            results[kind] = measure(kind, counts[kind], workdir, args.postgres_url)
            say(f"{kind}: {results[kind][0]:.3f} million instructions per request")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = render(results, counts)
    if args.no_write:
        print(text)
    else:
        args.output.write_text(text)
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
