"""`certctl crl generate`: sign and store a CRL now, outside the server's schedule."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from certctl.app import pki_base_url
from certctl.bootstrap import initialized
from certctl.cli._output import table
from certctl.config import Settings
from certctl.domain.errors import not_found
from certctl.ra.pki import PkiService

Common = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, common: Common) -> None:
    crl = sub.add_parser("crl", help="certificate revocation lists")
    csub = crl.add_subparsers(dest="crl_command", required=True, metavar="ACTION")
    generate = csub.add_parser(
        "generate",
        help="sign and store a new CRL (every issuer, or one)",
        description="Sign a new CRL with the next CRL number and store it; running servers "
        "serve it within a second. Run it with the server's environment: the CRL names its "
        "URL (built from CERTCTL_PKI_BASE_URL or CERTCTL_ACME_SERVER_EXTERNAL_URL), which "
        "must be the one in the certificates.",
    )
    common(generate)
    generate.add_argument("--issuer", help="issuer id (see `certctl profile show default`)")
    generate.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    with initialized(settings) as runtime:
        issuers = list(runtime.ca.issuers)
        if args.issuer is not None:
            if args.issuer not in runtime.ca.issuers:
                raise not_found(f"no issuer {args.issuer!r}; issuers: {', '.join(issuers)}")
            issuers = [args.issuer]
        service = PkiService(
            runtime.ra_context,
            runtime.ca,
            base_url=pki_base_url(settings),
            crl_interval=settings.acme.crl_generation_interval,
        )
        crls = [service.generate_crl(issuer_id) for issuer_id in issuers]
    rows = [
        [
            crl.issuer_id,
            str(crl.number),
            str(crl.entries),
            crl.next_update.strftime("%Y-%m-%dT%H:%M:%SZ"),
            crl.idp_url or "-",
        ]
        for crl in crls
    ]
    print(table(["ISSUER", "NUMBER", "ENTRIES", "NEXT_UPDATE", "URL"], rows))
    return 0
