"""`certctl serve`, `certctl init`, `certctl ca root`."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from certctl.bootstrap import DEFAULT_PROFILE_ID, initialize, initialized, open_runtime
from certctl.ca import ensure_server_certificate
from certctl.cli._protocol import KEEP_ALIVE_S, DrainingHttpToolsProtocol
from certctl.config import Settings
from certctl.observability.logs import configure_logging
from certctl.observability.metrics import MULTIPROC_ENV

log = logging.getLogger("certctl.serve")

Common = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, common: Common) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the server (HTTPS, ACME, metrics)",
        description="Serve HTTPS with a certificate from certctl's own CA. On first start this "
        "creates the data directory, the database schema, a root and an issuing CA, and the "
        "default profile.",
    )
    common(serve)
    serve.add_argument("--listen", help="HOST:PORT (env CERTCTL_LISTEN, default 127.0.0.1:8443)")
    serve.add_argument("--workers", type=int, help="worker processes (env CERTCTL_WORKERS)")
    serve.add_argument(
        "--plain-http",
        action="store_true",
        help="serve plain HTTP, only behind a TLS-terminating proxy (env CERTCTL_PLAIN_HTTP)",
    )
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init", help="create the data directory, schema, CA and default profile")
    common(init)
    init.set_defaults(func=cmd_init)

    ca = sub.add_parser("ca", help="CA material")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="CA_COMMAND")
    root = ca_sub.add_parser("root", help="print the root CA certificate (PEM)")
    common(root)
    root.set_defaults(func=cmd_ca_root)


def cmd_init(_: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    with initialized(settings) as runtime:
        print(f"data directory: {settings.data_dir}")
        print(f"issuers: {', '.join(runtime.ca.issuers)}")
        print(f"default profile: {DEFAULT_PROFILE_ID}")
    return 0


def cmd_ca_root(_: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings, migrate=False)
    runtime.db.dispose()
    sys.stdout.write(runtime.ca.root_pem)
    return 0


def _shared_metrics_dir(settings: Settings) -> None:
    """Fresh per start (stale files would add old counts), and one per listener, so several
    replicas sharing a data directory never wipe or sum each other's metrics."""
    path = settings.data_dir / "metrics" / f"{settings.listen_host}-{settings.listen_port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())


def _raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: every connection, idle or not, holds a file
    descriptor, and at the usual soft limit of 1024 a thousand idle clients would make
    accept() fail for everyone else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning(
            "open files limit not raised", extra={"fields": {"soft": soft, "error": str(exc)}}
        )
        return
    log.info("open files limit", extra={"fields": {"limit": hard, "was": soft}})


def cmd_serve(_: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    _raise_open_files_limit()
    runtime = initialize(settings)
    ssl: dict[str, str] = {}
    scheme = "http"
    if not settings.plain_http:
        hostnames = (settings.listen_host, *settings.tls_hostnames)
        cert, key = ensure_server_certificate(
            runtime.ca, settings.data_dir, hostnames, runtime.clock
        )
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        scheme = "https"
    runtime.db.dispose()
    if settings.workers > 1:
        _shared_metrics_dir(settings)
    host = settings.listen_host
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving",
        extra={
            "fields": {
                "directory": f"{scheme}://{shown}:{settings.listen_port}/acme/directory",
                "workers": settings.workers,
            }
        },
    )
    uvicorn.run(
        "certctl.app:app_from_env",
        factory=True,
        http=DrainingHttpToolsProtocol,
        host=host,
        port=settings.listen_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        timeout_keep_alive=int(KEEP_ALIVE_S),
        server_header=False,
        **ssl,  # type: ignore[arg-type]
    )
    return 0
