"""Plain-HTTP endpoint throughput with ``wrk`` (Debian package ``wrk``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY_RE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL_RE = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_RE = re.compile(r"Socket errors:\s+(.*)$", re.MULTILINE)


@dataclass
class WrkResult:
    rps: float = 0.0
    requests: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int = 0
    socket_errors: str = ""
    server_cpu_ms: float = 0.0  # filled in by the caller
    error: str = ""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, method: str, duration_s: float, connections: int, threads: int) -> WrkResult:
    """``wrk`` against ``url`` with ``method`` (GET or HEAD); parsed summary."""
    exe = shutil.which("wrk")
    if exe is None:
        return WrkResult(error="wrk not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "method.lua"
        script.write_text(f'wrk.method = "{method}"\n')
        cmd = [
            exe,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(round(duration_s), 1)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
            )
        except subprocess.TimeoutExpired:
            return WrkResult(error="wrk did not finish")
    return parse(out.stdout, out.returncode, out.stderr)


def parse(text: str, returncode: int = 0, stderr: str = "") -> WrkResult:
    result = WrkResult()
    rps = _RPS_RE.search(text)
    if returncode != 0 or rps is None:
        result.error = (stderr or text).strip().splitlines()[-1:][0] if (stderr or text) else "?"
        return result
    result.rps = float(rps.group(1))
    total = _TOTAL_RE.search(text)
    result.requests = int(total.group(1)) if total else 0
    for pct, value, unit in _LATENCY_RE.findall(text):
        ms = float(value) * _UNITS[unit]
        if pct == "50":
            result.p50_ms = ms
        elif pct == "99":
            result.p99_ms = ms
    non2xx = _NON2XX_RE.search(text)
    result.non_2xx = int(non2xx.group(1)) if non2xx else 0
    sock = _SOCKET_RE.search(text)
    result.socket_errors = sock.group(1).strip() if sock else ""
    return result
