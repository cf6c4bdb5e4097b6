"""`certctl profile create|list|show|update`: manage certificate profiles without SQL."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from certctl.bootstrap import initialized
from certctl.cli._output import table
from certctl.config import Settings
from certctl.domain.model import (
    DEFAULT_KEY_ALGORITHMS,
    EKU_NAMES,
    KEY_ALGORITHMS,
    AuthMode,
    Profile,
)
from certctl.ra import profiles

Common = Callable[[argparse.ArgumentParser], None]
ACTOR = "cli"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _options(parser: argparse.ArgumentParser, *, create: bool) -> None:
    parser.add_argument("--name", help="display name")
    parser.add_argument("--description")
    parser.add_argument(
        "--issuer", help="issuer id that signs for this profile (default: the CA's current issuer)"
    )
    parser.add_argument(
        "--acme-auth-mode",
        choices=[m.value for m in AuthMode],
        help="trust_authenticated (default) or challenge",
    )
    parser.add_argument(
        "--key-algorithms",
        type=_csv,
        help=f"comma list of {', '.join(KEY_ALGORITHMS)}"
        + (f" (default {','.join(DEFAULT_KEY_ALGORITHMS)})" if create else ""),
    )
    parser.add_argument("--max-validity-days", type=int, help="maximum certificate lifetime")
    parser.add_argument("--ekus", type=_csv, help=f"comma list of {', '.join(EKU_NAMES)}")
    parser.add_argument("--must-staple", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--enabled", action=argparse.BooleanOptionalAction, default=None)
    policy = parser.add_argument_group(
        "identifier policy (enforced in every mode)",
        "Name patterns match on label boundaries: example.com covers example.com and every "
        "name under it (never evil-example.com); *.example.com covers only names under it.",
    )
    policy.add_argument("--allowed-names", type=_csv, help="comma list; empty allows all names")
    policy.add_argument("--denied-names", type=_csv, help="comma list; deny wins over allow")
    policy.add_argument(
        "--allow-wildcards",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow *.name identifiers (one level, leftmost label; default yes)",
    )
    policy.add_argument(
        "--allow-ip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow IP address identifiers, RFC 8738 (default no)",
    )
    policy.add_argument("--ip-networks", type=_csv, help="comma list of CIDRs IPs must be in")
    policy.add_argument("--max-identifiers", type=int, help="identifiers per order (default 100)")
    parser.add_argument(
        "--caa-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="check CAA (RFC 8659) at validation and again at finalize when stale",
    )
    parser.add_argument(
        "--allow-preauthorization",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offer newAuthz (RFC 8555 §7.4.1) on this profile",
    )
    parser.add_argument(
        "--renewal-window-days",
        type=int,
        help="ARI renewal policy: renew in [notAfter - N days, notAfter - N/2 days] "
        "(default: the last third of the validity)",
    )
    parser.add_argument(
        "--eab-required",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require an external account binding to register on this profile",
    )


def register(sub: Any, common: Common) -> None:
    profile = sub.add_parser("profile", help="manage certificate profiles")
    psub = profile.add_subparsers(dest="profile_command", required=True, metavar="ACTION")
    create = psub.add_parser("create", help="create a profile")
    common(create)
    create.add_argument(
        "id",
        help="profile id (a-z, 0-9, '-', '_'); its ACME directory is /acme/profile/<id>/directory",
    )
    _options(create, create=True)
    create.set_defaults(func=cmd_create)
    lst = psub.add_parser("list", help="list profiles")
    common(lst)
    lst.set_defaults(func=cmd_list)
    show = psub.add_parser("show", help="show one profile as JSON")
    common(show)
    show.add_argument("id")
    show.set_defaults(func=cmd_show)
    update = psub.add_parser("update", help="change a profile (only the options given)")
    common(update)
    update.add_argument("id")
    _options(update, create=False)
    update.set_defaults(func=cmd_update)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    mapping = {
        "name": "name",
        "description": "description",
        "issuer": "issuer_id",
        "acme_auth_mode": "acme_auth_mode",
        "key_algorithms": "key_algorithms",
        "max_validity_days": "max_validity_days",
        "ekus": "ekus",
        "must_staple": "must_staple",
        "enabled": "enabled",
        "allowed_names": "allowed_names",
        "denied_names": "denied_names",
        "allow_wildcards": "allow_wildcards",
        "allow_ip": "allow_ip",
        "ip_networks": "ip_networks",
        "max_identifiers": "max_identifiers",
        "caa_check": "caa_check",
        "eab_required": "eab_required",
        "allow_preauthorization": "allow_preauthorization",
        "renewal_window_days": "renewal_window_days",
    }
    return {
        field: getattr(args, arg)
        for arg, field in mapping.items()
        if getattr(args, arg) is not None
    }


def _show(profile: Profile) -> None:
    print(json.dumps(asdict(profile), indent=2, default=str))


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    changes = _changes(args)
    with initialized(settings) as runtime:
        base = Profile(
            id=args.id,
            name=args.id,
            issuer_id=runtime.ca.default_issuer.id,
            acme_auth_mode=settings.acme.default_auth_mode,
        )
        profile = profiles.create_profile(
            runtime.ra_context, profiles.apply_changes(base, changes), ACTOR
        )
    _show(profile)
    return 0


def cmd_list(_: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        found = profiles.list_profiles(runtime.ra_context)
    rows = [
        [
            p.id,
            p.acme_auth_mode.value,
            p.issuer_id,
            str(p.max_validity_days),
            ",".join(p.key_algorithms),
            "yes" if p.enabled else "no",
        ]
        for p in found
    ]
    print(table(["ID", "MODE", "ISSUER", "MAX_DAYS", "KEYS", "ENABLED"], rows))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        profile = profiles.get_profile(runtime.ra_context, args.id)
    _show(profile)
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        profile = profiles.update_profile(runtime.ra_context, args.id, _changes(args), ACTOR)
    _show(profile)
    return 0
