"""What the matrix is made of: modes, scenarios, outcomes and recorded cells."""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Mode(enum.Enum):
    """The auth mode of the profile a client is pointed at."""

    TRUST = "trust_authenticated"
    CHALLENGE = "challenge"

    @property
    def short(self) -> str:
        return "trust" if self is Mode.TRUST else "chal"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    what: str  # one line for the legend of docs/interop.md
    modes: tuple[Mode, ...] = (Mode.TRUST, Mode.CHALLENGE)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("register", "register", "create an ACME account (new-account)"),
    Scenario(
        "single",
        "single name",
        "order, finalize and download a certificate for one name "
        "(challenge mode: http-01 on the client's own listener or webroot)",
    ),
    Scenario("multi", "multi-name", "one certificate for two names"),
    Scenario(
        "wildcard",
        "wildcard (dns-01)",
        "`*.name` and `name` in one certificate, the wildcard proven by a TXT record "
        "(in trust mode no proof is asked)",
    ),
    Scenario(
        "tls-alpn",
        "tls-alpn-01",
        "one name proven with tls-alpn-01 (RFC 8737) on the client's own listener",
        modes=(Mode.CHALLENGE,),
    ),
    Scenario("ecdsa", "ECDSA key", "certificate for an ECDSA P-256 key"),
    Scenario("rsa", "RSA key", "certificate for an RSA 2048 key"),
    Scenario("renew", "renew", "the client's renewal path issues a new certificate"),
    Scenario("revoke", "revoke", "the client revokes a certificate (the server records it)"),
    Scenario("rollover", "key rollover", "account key change (RFC 8555 §7.3.5)"),
    Scenario("deactivate", "deactivate account", "account deactivation (RFC 8555 §7.3.6)"),
)
SCENARIO_IDS = tuple(s.id for s in SCENARIOS)


def scenarios_for(mode: Mode) -> tuple[Scenario, ...]:
    return tuple(s for s in SCENARIOS if mode in s.modes)


class Outcome(enum.Enum):
    PASS = "pass"  # noqa: S105 (an outcome, not a password)
    FAIL = "fail"
    UNSUPPORTED = "not supported"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class Cell:
    client: str
    mode: Mode
    scenario: str
    outcome: Outcome
    reason: str = ""
    seconds: float = 0.0
    expected_failure: bool = False  # a failure listed in the client's known failures


class StepError(Exception):
    """A scenario failed; the message is the one-line reason shown in the matrix."""


def one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Recorder:
    """Collects cells and prints one progress line per cell on stderr."""

    started: float = field(default_factory=time.monotonic)
    cells: list[Cell] = field(default_factory=list)
    quiet: bool = False

    def add(self, cell: Cell) -> None:
        self.cells.append(cell)
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        detail = f" ({cell.seconds:.1f}s)" if cell.outcome in (Outcome.PASS, Outcome.FAIL) else ""
        reason = f": {cell.reason}" if cell.reason and cell.outcome is not Outcome.PASS else ""
        known = " [known]" if cell.expected_failure else ""
        print(
            f"[{elapsed:6.1f}s] {cell.client:<11} {cell.mode.short:<5} {cell.scenario:<10} "
            f"{cell.outcome.value}{known}{detail}{reason}",
            file=sys.stderr,
            flush=True,
        )

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


@dataclass
class Session:
    """One client in one mode: runs its scenarios in order and records a cell for each.

    ``known_failures`` maps a scenario to the reason it is expected to fail (a client
    bug or limitation found out by running it); such a failure does not fail the run.
    """

    client: str
    mode: Mode
    recorder: Recorder
    known_failures: dict[str, str] = field(default_factory=dict)
    selected: frozenset[str] | None = None  # scenarios to run; None: all
    results: dict[str, Outcome] = field(default_factory=dict)

    def wanted(self, scenario: str) -> bool:
        return self.selected is None or scenario in self.selected

    def unsupported(self, scenario: str, reason: str) -> None:
        self._record(scenario, Outcome.UNSUPPORTED, reason)

    def not_run(self, scenario: str, reason: str) -> None:
        self._record(scenario, Outcome.NOT_RUN, reason)

    def run(self, scenario: str, step: Callable[[], None], needs: str | None = None) -> bool:
        """Run ``step`` as the cell ``scenario``; True when it passed.

        ``needs`` names an earlier scenario whose result this one depends on (e.g. the
        certificate that ``revoke`` revokes): when it did not pass, this cell fails too.
        """
        if not self.wanted(scenario):
            self.not_run(scenario, "not selected (--quick)")
            return False
        if needs is not None and self.results.get(needs) is not Outcome.PASS:
            self._record(scenario, Outcome.FAIL, f"needs {needs}, which did not pass")
            return False
        start = time.monotonic()
        try:
            step()
        except StepError as exc:
            self._record(scenario, Outcome.FAIL, one_line(str(exc)), time.monotonic() - start)
            return False
        except AssertionError as exc:
            reason = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else "check")
            self._record(scenario, Outcome.FAIL, reason, time.monotonic() - start)
            return False
        except Exception as exc:
            reason = one_line(f"{type(exc).__name__}: {exc}")
            self._record(scenario, Outcome.FAIL, reason, time.monotonic() - start)
            return False
        self._record(scenario, Outcome.PASS, "", time.monotonic() - start)
        return True

    def _record(self, scenario: str, outcome: Outcome, reason: str, seconds: float = 0.0) -> None:
        expected = outcome is Outcome.FAIL and scenario in self.known_failures
        if expected:
            reason = f"{reason} (known: {self.known_failures[scenario]})"
        self.results[scenario] = outcome
        self.recorder.add(
            Cell(self.client, self.mode, scenario, outcome, reason, seconds, expected)
        )
