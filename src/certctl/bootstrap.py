"""First start and every start: data directory, migrations, the CA, its issuers and the
default profile. Run once in the parent process before any worker starts serving."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from certctl.ca import LocalCA, load_or_create_ca
from certctl.config import Settings
from certctl.ra.context import Clock, RAContext
from certctl.ra.profiles import ensure_default_profile
from certctl.storage import inventory
from certctl.storage.db import Database

log = logging.getLogger(__name__)

DEFAULT_PROFILE_ID = "default"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    ca: LocalCA
    clock: Clock

    @property
    def ra_context(self) -> RAContext:
        return RAContext(self.db, self.clock, self.settings.acme)


def open_runtime(
    settings: Settings, *, clock: Clock = utc_now, migrate: bool = True, group_commit: bool = False
) -> Runtime:
    """Open the store (migrating it when asked) and load, or on first start create, the CA.
    ``group_commit``: see ``Database`` (the server's workers)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(
        settings.effective_database_url,
        synchronous=settings.sqlite_synchronous,
        group_commit=group_commit,
        shared=settings.workers > 1,
    )
    if migrate:
        db.migrate()
    ca = load_or_create_ca(settings.data_dir, key_type=settings.ca_key_type, clock=clock)
    return Runtime(settings, db, ca, clock)


def initialize(settings: Settings, *, clock: Clock = utc_now) -> Runtime:
    """Everything `certctl init` promises: idempotent, and safe for replicas starting together."""
    runtime = open_runtime(settings, clock=clock)
    now = clock()
    with runtime.db.write() as conn:
        for issuer in runtime.ca.issuers.values():
            inventory.ensure_issuer(
                conn,
                issuer_id=issuer.id,
                name=issuer.certificate.subject.rfc4514_string(),
                cert_pem=issuer.cert_pem,
                chain_pem=issuer.chain_pem,
                key_type=type(issuer.certificate.public_key()).__name__,
                now=now,
            )
    ensure_default_profile(runtime.ra_context, DEFAULT_PROFILE_ID, runtime.ca.default_issuer.id)
    _report_unsignable_profiles(runtime)
    log.info(
        "initialized",
        extra={
            "fields": {
                "data_dir": str(settings.data_dir),
                "issuers": list(runtime.ca.issuers),
                "database": "sqlite" if settings.uses_sqlite else "postgresql",
            }
        },
    )
    return runtime


def _report_unsignable_profiles(runtime: Runtime) -> None:
    """A replica started with a ``ca/`` of its own against a shared database finds profiles
    bound to issuers whose keys it lacks: every finalize for them would fail. Said once,
    at the start, in words an operator can act on."""
    with runtime.db.read() as conn:
        profiles = inventory.list_profiles(conn)
    for profile in profiles:
        if profile.issuer_id not in runtime.ca.issuers:
            log.error(
                "profile %r is bound to issuer %s, whose key is not in %s: this server "
                "cannot sign its certificates (replicas must share the data directory's "
                "ca/; see docs/deployment.md)",
                profile.id,
                profile.issuer_id,
                runtime.settings.data_dir / "ca",
            )


@contextmanager
def initialized(settings: Settings, *, clock: Clock = utc_now) -> Iterator[Runtime]:
    """``initialize`` for one-shot commands: the database pool is closed afterwards."""
    runtime = initialize(settings, clock=clock)
    try:
        yield runtime
    finally:
        runtime.db.dispose()
