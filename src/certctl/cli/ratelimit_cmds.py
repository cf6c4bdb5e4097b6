"""`certctl ratelimit set|list|delete`: ACME rate-limit overrides per account or profile."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

from certctl.bootstrap import initialized
from certctl.cli._output import table
from certctl.config import Settings
from certctl.ra import ratelimits
from certctl.ra.ratelimits import Limit

Common = Callable[[argparse.ArgumentParser], None]
ACTOR = "cli"

LIMITS_HELP = "limits (0 turns one off):\n" + "\n".join(
    f"  {limit.value:<30} {limit.meaning}" for limit in Limit
)
RESOLUTION = textwrap.fill(
    "An account's override beats its profile's, which beats the server setting "
    "(CERTCTL_ACME_SERVER_RATE_LIMIT_*). Running servers apply a change within about "
    "2 seconds.",
    width=88,
)


def _subject(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", metavar="ID", help="ACME account id (acct-...)")
    who.add_argument("--profile", metavar="ID", help="profile id")
    parser.add_argument(
        "--limit",
        required=True,
        choices=[limit.value for limit in Limit],
        metavar="NAME",
        help="one of the limits below",
    )


def register(sub: Any, common: Common) -> None:
    parser = sub.add_parser(
        "ratelimit",
        help="ACME rate-limit overrides per account or profile",
        description=f"{RESOLUTION}\n\n{LIMITS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = parser.add_subparsers(dest="ratelimit_command", required=True, metavar="ACTION")
    put = rsub.add_parser(
        "set",
        help="set a limit for one account or profile",
        description=f"{RESOLUTION}\n\n{LIMITS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(put)
    _subject(put)
    put.add_argument("--value", required=True, type=int, metavar="N", help="the limit; 0: off")
    put.set_defaults(func=cmd_set)
    lst = rsub.add_parser("list", help="list the overrides")
    common(lst)
    lst.set_defaults(func=cmd_list)
    delete = rsub.add_parser(
        "delete",
        help="remove an override (the profile's or the server's value applies again)",
        description=LIMITS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(delete)
    _subject(delete)
    delete.set_defaults(func=cmd_delete)


def _scope(args: argparse.Namespace) -> tuple[str, str]:
    return ("account", args.account) if args.account else ("profile", args.profile)


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    scope, subject = _scope(args)
    with initialized(settings) as runtime:
        ratelimits.set_override(runtime.ra_context, scope, subject, args.limit, args.value, ACTOR)
    print(f"{scope} {subject}: {args.limit} = {args.value}")
    return 0


def cmd_list(_: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        overrides = ratelimits.list_overrides(runtime.ra_context)
    rows = [
        [
            o.scope,
            o.subject_id,
            o.limit_name,
            str(o.value),
            o.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ]
        for o in overrides
    ]
    print(table(["SCOPE", "ID", "LIMIT", "VALUE", "UPDATED"], rows))
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    scope, subject = _scope(args)
    with initialized(settings) as runtime:
        ratelimits.delete_override(runtime.ra_context, scope, subject, args.limit, ACTOR)
    print(f"{scope} {subject}: {args.limit} override deleted")
    return 0
