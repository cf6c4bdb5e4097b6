"""`certctl ari shift`: pull renewal windows earlier for incident response (RFC 9773)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from certctl.bootstrap import initialized
from certctl.config import Settings
from certctl.domain.errors import malformed
from certctl.domain.serials import canonical_serial, parse_serial_hex
from certctl.ra import ari

Common = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, common: Common) -> None:
    parser = sub.add_parser("ari", help="ACME renewal information (RFC 9773)")
    asub = parser.add_subparsers(dest="ari_command", required=True, metavar="ACTION")
    shift = asub.add_parser(
        "shift",
        help="make certificates due for renewal by a time (incident response)",
        description="Every matching active certificate's suggested renewal window ends no "
        "later than --end; ACME clients that poll renewalInfo renew by then. Select by "
        "profile, issuer, or serials (any combination narrows the set).",
    )
    common(shift)
    shift.add_argument("--profile", help="profile id")
    shift.add_argument("--issuer", help="issuer id")
    shift.add_argument("--serial", action="append", default=[], help="serial (repeatable)")
    shift.add_argument("--end", required=True, help="RFC 3339 time, or 'now'")
    shift.set_defaults(func=cmd_shift)


def _end(text: str) -> datetime:
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise malformed(f"--end {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise malformed("--end needs a time zone offset, e.g. 2026-12-01T00:00:00Z")
    return value


def cmd_shift(args: argparse.Namespace, settings: Settings) -> int:
    end = _end(args.end)
    serials = tuple(canonical_serial(parse_serial_hex(s)) for s in args.serial)
    with initialized(settings) as runtime:
        count = ari.shift(
            runtime.ra_context,
            end=end,
            profile_id=args.profile,
            issuer_id=args.issuer,
            serials=serials,
            actor="cli",
        )
    print(f"shifted {count} certificate(s): renewal windows end by {end.isoformat()}")
    return 0
