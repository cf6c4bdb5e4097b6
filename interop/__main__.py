"""``python -m interop``: run every installed ACME client against a served certctl.

Progress goes to standard error, one line per cell. Unless ``--quick`` is given, the
matrix is written to ``docs/interop.md``. The exit status is 1 when a cell that is
expected to pass failed (or, with ``--require-all`` or ``CERTCTL_TEST_REQUIRE_ALL=1``,
when a client is not installed), 2 when the lab could not be set up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path

from tests.support.gating import require_all

from interop.clients import CLIENTS
from interop.clients.base import Client
from interop.lab import Lab, LabError
from interop.model import (
    Cell,
    Mode,
    Outcome,
    Recorder,
    Session,
    scenarios_for,
)
from interop.report import Report, render

DEFAULT_OUTPUT = Path("docs/interop.md")

# --quick (CI): every client and mode, but only the scenarios that exercise distinct
# protocol paths; the full matrix is `make interop`.
QUICK = frozenset({"register", "single", "wildcard", "tls-alpn", "rsa", "revoke", "rollover"})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m interop", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only the scenarios {', '.join(sorted(QUICK))}; writes no document "
        "unless --output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the matrix (default {DEFAULT_OUTPUT}, none with --quick)",
    )
    parser.add_argument("--no-output", action="store_true", help="write no document")
    parser.add_argument(
        "--client",
        action="append",
        choices=[c.name for c in CLIENTS],
        help="run only this client (repeatable)",
    )
    parser.add_argument(
        "--mode", action="append", choices=[m.short for m in Mode], help="run only this mode"
    )
    parser.add_argument(
        "--require-all",
        action="store_true",
        default=require_all(),
        help="a client that is not installed fails the run (default in CI: "
        "CERTCTL_TEST_REQUIRE_ALL=1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def run_session(lab: Lab, client: Client, mode: Mode, recorder: Recorder, quick: bool) -> None:
    session = Session(
        client.name,
        mode,
        recorder,
        known_failures={sc: why for (m, sc), why in client.known_failures.items() if m is mode},
        selected=QUICK if quick else None,
    )
    try:
        client.run(lab, session)
    except Exception as exc:  # a harness bug: every remaining cell fails with it
        for scenario in scenarios_for(mode):
            if scenario.id not in session.results:
                session.run(scenario.id, _raiser(exc))
    for scenario in scenarios_for(mode):
        if scenario.id not in session.results:
            session.run(scenario.id, _raiser(RuntimeError("no cell recorded (harness bug)")))


def _raiser(exc: Exception) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    recorder = Recorder()
    clients = [c for c in CLIENTS if not args.client or c.name in args.client]
    modes = [m for m in Mode if not args.mode or m.short in args.mode]
    versions: dict[str, str | None] = {c.name: c.version() for c in clients}
    for client in clients:
        shown = versions[client.name] or f"not installed ({client.install_hint})"
        recorder.note(f"{client.name}: {shown}")

    workdir = Path(tempfile.mkdtemp(prefix="certctl-interop-"))
    lab = Lab(workdir)
    failed = False
    try:
        try:
            lab.start()
        except (LabError, OSError, RuntimeError) as exc:
            print(f"interop: cannot set up the lab: {exc}", file=sys.stderr)
            return 2
        recorder.note(f"certctl serving {lab.server.base_url}; work directory {workdir}")
        for mode in modes:
            for client in clients:
                if versions[client.name] is None:
                    for scenario in scenarios_for(mode):
                        recorder.add(
                            Cell(
                                client.name,
                                mode,
                                scenario.id,
                                Outcome.NOT_RUN,
                                f"not installed ({client.install_hint})",
                            )
                        )
                    continue
                run_session(lab, client, mode, recorder, args.quick)
    finally:
        lab.stop()

    unexpected = [c for c in recorder.cells if c.outcome is Outcome.FAIL and not c.expected_failure]
    missing = [c for c in clients if versions[c.name] is None]
    failed = bool(unexpected) or (args.require_all and bool(missing))
    elapsed = time.monotonic() - started

    output = None if args.no_output else args.output
    if output is None and not args.quick and not args.no_output:
        output = DEFAULT_OUTPUT
    if output is not None:
        report = Report(
            date=dt.datetime.now(dt.UTC).date().isoformat(),
            clients=clients,
            versions=versions,
            modes=modes,
            cells=recorder.cells,
            seconds=elapsed,
            quick=args.quick,
            certctl_version=package_version("certctl"),
        )
        output.write_text(render(report))
        recorder.note(f"wrote {output}")

    counts = {o: sum(1 for c in recorder.cells if c.outcome is o) for o in Outcome}
    summary = ", ".join(f"{n} {o.value}" for o, n in counts.items())
    recorder.note(f"{summary} in {elapsed:.0f}s")
    for cell in unexpected:
        print(
            f"interop: FAILED {cell.client} {cell.mode.short} {cell.scenario}: {cell.reason}",
            file=sys.stderr,
        )
    for client in missing:
        level = "FAILED" if args.require_all else "note"
        print(
            f"interop: {level}: {client.name} is not installed ({client.install_hint})",
            file=sys.stderr,
        )
    if failed or args.keep:
        print(f"interop: client logs kept in {workdir / 'logs'}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    # The plain closing line CI reads: cells expected to pass that passed, and failures.
    passed = counts[Outcome.PASS]
    print(f"interop: {passed} passed, {len(unexpected)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
