"""certctl command line: serve, init, ca, profile, cert."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from certctl.cli import cert_cmds, profile_cmds, serve_cmds
from certctl.config import ConfigError, Settings, load_settings
from certctl.domain.errors import AcmeError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (env CERTCTL_DATA_DIR, default ./data)")
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env CERTCTL_DATABASE_URL; default: SQLite in the data directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certctl",
        description="Self-hosted private certificate authority with a built-in ACME server.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmds.register(sub, _common)
    profile_cmds.register(sub, _common)
    cert_cmds.register(sub, _common)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags override the environment; the result is exported so worker processes agree."""
    overrides = {
        "CERTCTL_DATA_DIR": getattr(args, "data_dir", None),
        "CERTCTL_DATABASE_URL": getattr(args, "database_url", None),
        "CERTCTL_LISTEN": getattr(args, "listen", None),
        "CERTCTL_WORKERS": str(args.workers) if getattr(args, "workers", None) else None,
        "CERTCTL_PLAIN_HTTP": "true" if getattr(args, "plain_http", False) else None,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value
    return load_settings(os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
        result: int = args.func(args, settings)
        return result
    except ConfigError as exc:
        print(f"certctl: configuration error: {exc}", file=sys.stderr)
        return 2
    except AcmeError as exc:
        print(f"certctl: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
