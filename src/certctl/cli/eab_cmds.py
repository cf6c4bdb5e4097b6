"""`certctl eab create|list|revoke`: external account binding keys (RFC 8555 §7.3.4)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from certctl.bootstrap import initialized
from certctl.cli._output import table
from certctl.config import Settings, parse_duration
from certctl.ra import eab

Common = Callable[[argparse.ArgumentParser], None]
ACTOR = "cli"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def register(sub: Any, common: Common) -> None:
    parser = sub.add_parser("eab", help="external account binding keys")
    esub = parser.add_subparsers(dest="eab_command", required=True, metavar="ACTION")
    create = esub.add_parser(
        "create",
        help="make a kid and MAC key (the key is shown once)",
        description="Prints the kid and the base64url MAC key to hand to an ACME client "
        "(certbot --eab-kid/--eab-hmac-key, lego --eab --kid --hmac). The key is not shown again.",
    )
    common(create)
    create.add_argument(
        "--profile",
        action="append",
        required=True,
        dest="profiles",
        help="profile id the key may register accounts on (repeat for several)",
    )
    create.add_argument(
        "--reusable", action="store_true", help="allow several accounts (default: one)"
    )
    create.add_argument("--expires-in", help="lifetime such as 24h or 720h (default: never)")
    create.add_argument(
        "--allowed-names",
        type=_csv,
        default=(),
        help="comma list of name patterns accounts bound with this key may order",
    )
    create.add_argument("--description", default="")
    create.set_defaults(func=cmd_create)
    lst = esub.add_parser("list", help="list EAB keys (never their MAC keys)")
    common(lst)
    lst.set_defaults(func=cmd_list)
    revoke = esub.add_parser("revoke", help="revoke a key: it binds no further accounts")
    common(revoke)
    revoke.add_argument("kid")
    revoke.set_defaults(func=cmd_revoke)


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    expires = parse_duration("--expires-in", args.expires_in) if args.expires_in else None
    with initialized(settings) as runtime:
        key, secret = eab.create_key(
            runtime.ra_context,
            profile_ids=tuple(args.profiles),
            reusable=args.reusable,
            expires_in=expires,
            allowed_names=tuple(args.allowed_names),
            description=args.description,
            actor=ACTOR,
        )
    print(f"kid: {key.kid}")
    print(f"hmac_key: {secret}")
    return 0


def cmd_list(_: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        keys = eab.list_keys(runtime.ra_context)
    rows = [
        [
            k.kid,
            ",".join(k.profile_ids),
            "yes" if k.reusable else "no",
            str(k.uses),
            "yes" if k.revoked else "no",
            k.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if k.expires_at else "-",
            ",".join(k.allowed_names) or "-",
        ]
        for k in keys
    ]
    print(table(["KID", "PROFILES", "REUSABLE", "USES", "REVOKED", "EXPIRES", "NAMES"], rows))
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        eab.revoke_key(runtime.ra_context, args.kid, ACTOR)
    print(f"revoked {args.kid}")
    return 0
