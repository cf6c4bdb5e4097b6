"""certctl command line: serve, init, ca, profile, cert."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping, Sequence

from sqlalchemy.exc import OperationalError

from certctl.cli import (
    ari_cmds,
    cert_cmds,
    eab_cmds,
    pki_cmds,
    profile_cmds,
    ratelimit_cmds,
    serve_cmds,
)
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
    eab_cmds.register(sub, _common)
    ari_cmds.register(sub, _common)
    pki_cmds.register(sub, _common)
    ratelimit_cmds.register(sub, _common)
    return parser


# Commands whose work continues in other processes that read the environment themselves
# (uvicorn workers build the app from os.environ), so flags must be exported for them.
_EXPORTING_COMMANDS = frozenset({"serve"})


def flag_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The CERTCTL_* values given as flags (flags win over the environment)."""
    overrides = {
        "CERTCTL_DATA_DIR": getattr(args, "data_dir", None),
        "CERTCTL_DATABASE_URL": getattr(args, "database_url", None),
        "CERTCTL_LISTEN": getattr(args, "listen", None),
        # `is not None`: --workers 0 must reach validation, not fall back silently.
        "CERTCTL_WORKERS": None if getattr(args, "workers", None) is None else str(args.workers),
        "CERTCTL_PLAIN_HTTP": "true" if getattr(args, "plain_http", False) else None,
    }
    return {name: value for name, value in overrides.items() if value is not None}


def settings_from(
    args: argparse.Namespace, environ: MutableMapping[str, str] | None = None
) -> Settings:
    """Flags override the environment. Only ``serve`` exports them (to ``environ``, by
    default ``os.environ``) so its worker processes agree; other commands leave the
    environment untouched, so one call never leaks into the next."""
    env = os.environ if environ is None else environ
    overrides = flag_overrides(args)
    settings = load_settings({**env, **overrides})
    if getattr(args, "command", None) in _EXPORTING_COMMANDS:
        env.update(overrides)
    return settings


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
    except OperationalError as exc:
        # An unreachable or locked database: one line, not a traceback.
        print(f"certctl: database error: {_first_line(exc.orig or exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.filename:
            detail += f": {exc.filename}"
        print(f"certctl: {detail}", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
