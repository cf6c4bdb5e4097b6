"""CPU time of process groups, read from /proc.

A :class:`CpuMeter` samples ``utime + stime`` (``/proc/<pid>/stat`` fields 14 and 15) of a
set of processes chosen afresh at every sample, from ``start()`` to ``stop()``, every
``interval`` seconds on a background thread. Each process counts from its first sample in
the window (or from zero when it appeared during the window) to its last, so processes
that start or exit inside the window (PostgreSQL backends, for instance) are counted up to
the last sample that saw them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL_S = 0.2

# Titles of the PostgreSQL processes that serve the whole cluster rather than one client.
_PG_AUX = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "stats collector",
    "archiver",
    "io worker",
    "walsummarizer",
)


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    uid: int
    ticks: int  # utime + stime
    comm: str
    cmdline: str


def read_proc(pid: int) -> ProcInfo | None:
    """One process's stat line, or None if it has gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
        uid = os.stat(f"/proc/{pid}").st_uid
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may contain spaces: split after the last ')'.
    lpar, rpar = stat.index("("), stat.rindex(")")
    fields = stat[rpar + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        uid=uid,
        ticks=int(fields[11]) + int(fields[12]),
        comm=stat[lpar + 1 : rpar],
        cmdline=cmdline,
    )


def all_processes() -> list[ProcInfo]:
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_proc(int(entry))
            if info is not None:
                procs.append(info)
    return procs


def tree(root_pids: Iterable[int]) -> Callable[[], list[ProcInfo]]:
    """A selector: the given processes and all their descendants."""
    roots = set(root_pids)

    def select() -> list[ProcInfo]:
        procs = all_processes()
        children: dict[int, list[ProcInfo]] = {}
        by_pid = {p.pid: p for p in procs}
        for p in procs:
            children.setdefault(p.ppid, []).append(p)
        chosen: list[ProcInfo] = []
        stack = [by_pid[r] for r in roots if r in by_pid]
        while stack:
            p = stack.pop()
            chosen.append(p)
            stack.extend(children.get(p.pid, ()))
        return chosen

    return select


def postgres_cluster(database: str, owner_uid: int) -> Callable[[], list[ProcInfo]]:
    """A selector: the PostgreSQL processes that work for ``database``.

    That is the postmaster, the cluster-wide helpers (checkpointer, WAL writer, ...) and the
    backends and autovacuum workers of ``database``; backends of other databases (another
    program's) are left out, so their load is not charged to the benchmark.
    """

    def select() -> list[ProcInfo]:
        chosen = []
        for p in all_processes():
            if p.uid != owner_uid:
                continue
            title = p.cmdline
            if title.startswith("postgres:"):
                # "postgres: 15/main: checkpointer", "postgres: 15/main: user db 127.0.0.1(5) idle"
                rest = title.split(":", 2)[-1].strip()
                if rest.startswith(_PG_AUX) or database in rest.split():
                    chosen.append(p)
            elif p.comm in ("postgres", "postmaster"):
                chosen.append(p)  # the postmaster: its argv is the binary's path
        return chosen

    return select


def system_busy_ticks() -> int:
    """Busy ticks of the whole machine (all CPUs) from /proc/stat: total minus idle/iowait."""
    with open("/proc/stat", encoding="ascii") as fh:
        first = fh.readline().split()
    values = [int(v) for v in first[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice are inside user/nice]
    total = sum(values[:8])
    return total - values[3] - values[4]


class CpuMeter:
    """CPU milliseconds used by the processes ``select`` returns, between start and stop."""

    def __init__(
        self, select: Callable[[], list[ProcInfo]], interval: float = SAMPLE_INTERVAL_S
    ) -> None:
        self._select = select
        self._interval = interval
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = False

    def _sample(self) -> None:
        procs = self._select()
        with self._lock:
            for p in procs:
                if p.pid not in self._first:
                    self._first[p.pid] = p.ticks if not self._started else 0
                self._last[p.pid] = p.ticks

    def start(self) -> None:
        self._sample()
        self._started = True
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def stop(self) -> float:
        """Stop sampling; CPU milliseconds used in the window."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        with self._lock:
            ticks = sum(self._last[pid] - self._first[pid] for pid in self._last)
        return ticks * 1000.0 / CLK_TCK


class SystemMeter:
    """Busy CPU milliseconds of the whole machine between start and stop."""

    def __init__(self) -> None:
        self._start = 0

    def start(self) -> None:
        self._start = system_busy_ticks()

    def stop(self) -> float:
        return (system_busy_ticks() - self._start) * 1000.0 / CLK_TCK
