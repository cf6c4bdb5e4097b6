"""`certctl cert list|show`: the certificate inventory."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from certctl.bootstrap import initialized
from certctl.cli._output import table
from certctl.config import Settings
from certctl.domain.errors import AcmeError, not_found
from certctl.domain.serials import canonical_serial, parse_serial_hex
from certctl.ra.revocation import revoke
from certctl.revocation import ALL_REASONS, RevocationReason, parse_reason
from certctl.storage import inventory

Common = Callable[[argparse.ArgumentParser], None]


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def register(sub: Any, common: Common) -> None:
    cert = sub.add_parser("cert", help="certificate inventory")
    csub = cert.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    lst = csub.add_parser("list", help="list issued certificates")
    common(lst)
    lst.add_argument("--limit", type=_positive_int, default=1000, help="at most this many rows")
    lst.set_defaults(func=cmd_list)
    show = csub.add_parser("show", help="show one certificate (by id or serial) as JSON")
    common(show)
    show.add_argument("key", help="certificate version id, managed certificate id, or serial (hex)")
    show.set_defaults(func=cmd_show)
    revoke = csub.add_parser(
        "revoke",
        help="revoke a certificate (the same pipeline as ACME revoke-cert)",
        description="Marks the certificate revoked, records the revocation for OCSP and the "
        "CRL, and audits it, in one transaction. keyCompromise also blocks the key.",
    )
    common(revoke)
    revoke.add_argument("key", help="certificate version id, managed certificate id, or serial")
    revoke.add_argument(
        "--reason",
        default="unspecified",
        help="RFC 5280 reason name or code: " + ", ".join(r.name.lower() for r in ALL_REASONS),
    )
    revoke.set_defaults(func=cmd_revoke)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime, runtime.db.read() as conn:
        versions = inventory.list_versions(conn, limit=args.limit)
    rows = [
        [
            v.id,
            v.serial,
            v.profile_id,
            f"{v.key_algorithm}-{v.key_size}",
            v.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            v.status,
        ]
        for v in versions
    ]
    print(table(["ID", "SERIAL", "PROFILE", "KEY", "NOT_AFTER", "STATUS"], rows))
    return 0


def _lookup_keys(key: str) -> list[str]:
    """An id as given, preceded by its canonical serial form when it reads as hex
    (``00:AB:cd`` finds serial ``abcd``)."""
    try:
        return [canonical_serial(parse_serial_hex(key)), key]
    except AcmeError:
        return [key]


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    version = None
    with initialized(settings) as runtime, runtime.db.read() as conn:
        for key in _lookup_keys(args.key):
            version = inventory.find_version(conn, key)
            if version is not None:
                break
    if version is None:
        raise not_found(f"no certificate {args.key!r}")
    print(json.dumps(asdict(version), indent=2, default=str))
    return 0


def _reason(text: str) -> RevocationReason:
    by_name = {r.name.lower().replace("_", ""): r for r in ALL_REASONS}
    key = text.strip().lower().replace("_", "").replace("-", "")
    if key in by_name:
        return by_name[key]
    code: object = int(text) if text.strip().isdigit() else text
    return RevocationReason(parse_reason(code, allowed=ALL_REASONS))


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    reason = _reason(args.reason)
    with initialized(settings) as runtime:
        with runtime.db.read() as conn:
            version = next(
                (v for k in _lookup_keys(args.key) if (v := inventory.find_version(conn, k))),
                None,
            )
        if version is None:
            raise not_found(f"no certificate {args.key!r}")
        revoke(runtime.ra_context, version, reason, "cli")
    print(f"revoked {version.serial} ({reason.name.lower()})")
    return 0
