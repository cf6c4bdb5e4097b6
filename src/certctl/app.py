"""build_app(runtime): the ASGI application. One process type serves everything."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from certctl.acme.nonce import NonceCodec
from certctl.bootstrap import Runtime, open_runtime
from certctl.config import Settings, ValidationSettings, load_settings
from certctl.domain.model import Account
from certctl.fastpath import QuickAnswer, QuickPost, QuickRequest, render
from certctl.observability.logs import RequestLogMiddleware, configure_logging
from certctl.observability.metrics import Metrics
from certctl.pki import PkiState, pki_routes
from certctl.pki.routes import OCSP_GET_PREFIX, OcspFastPath
from certctl.ra import RegistrationAuthority, gc
from certctl.ra.challenges import Validator
from certctl.ra.pki import PkiService, refresh_tick
from certctl.ra.ratelimits import OverrideCache, RateLimits
from certctl.ratelimit import (
    FailoverStore,
    LimitStore,
    MemoryGcraStore,
    RedisGcraStore,
    TokenBucketLimiter,
)
from certctl.scheduler.periodic import Periodic
from certctl.storage import secrets as secret_store
from certctl.storage.db import Database
from certctl.va import ValidationAuthority, VASettings
from certctl.wfe.quick import QuickAcme
from certctl.wfe.routes import PREFIX, AcmeApp, WfeState, handler_threads

# The nonce MAC key (keyed BLAKE2b now; the name is kept so existing databases keep theirs).
NONCE_KEY = "acme_nonce_hmac_key"


def build_app(runtime: Runtime) -> ASGIApp:
    settings = runtime.settings
    metrics = Metrics()
    if runtime.db.syncer is not None:
        # Before this process's first commit, so that the counters see every one.
        runtime.db.syncer.observe = metrics.group_commit()
    with runtime.db.write() as conn:
        # Shared by every worker and replica, so a nonce minted by one is honoured by all.
        key = secret_store.get_or_create(
            conn, NONCE_KEY, lambda: secrets.token_bytes(32), runtime.clock()
        )
    codec = NonceCodec(key, settings.acme.nonce_ttl, runtime.clock)
    va = build_va(settings.acme.validation)
    validator = Validator(
        va=va,
        caa_identities=settings.acme.caa_identities,
        account_urls=lambda account: account_urls(settings, account),
        observe=metrics.validation,
    )
    # Issued leaves point relying parties at this server's CRL and OCSP routes.
    ctx = dataclasses.replace(runtime.ra_context, pki_base_url=pki_base_url(settings))
    store, redis_store = rate_limit_store(settings, metrics)
    limits = RateLimits(
        settings.acme.rate_limits,
        store,
        overrides=OverrideCache(runtime.db),
        clock=lambda: runtime.clock().timestamp(),
        on_trip=metrics.ratelimit_trip,
    )
    ra = RegistrationAuthority(ctx, runtime.ca, codec, validator, limits=limits)
    pki = PkiService(
        ctx,
        runtime.ca,
        base_url=ctx.pki_base_url,
        crl_interval=settings.acme.crl_generation_interval,
        on_crl_generated=metrics.crl_generated,
    )
    # A revocation here shows at once; one elsewhere within a second (the feed).
    ra.revocation_hooks.append(pki.on_revoked)
    # Validations left processing by a crash or a killed replica are resumed, never stuck.
    recovery = Periodic(
        "validation-recovery",
        settings.acme.validation.timeout.total_seconds(),
        ra.recover_validations,
    )

    jobs = [recovery]
    closers: list[Callable[[], None]] = []
    # CRLs are re-signed every CERTCTL_CRL_GENERATION_INTERVAL; every process looks, the
    # first to find one due signs it (the stored CRL number only goes up).
    interval = settings.acme.crl_generation_interval
    jobs.append(Periodic("crl-refresh", refresh_tick(interval), pki.refresh_crls))
    gc_every = settings.acme.gc_interval.total_seconds()
    if gc_every > 0:
        # Sweeps expired ACME state and reconciles orders a crash left processing.
        jobs.append(Periodic("acme-gc", gc_every, lambda: gc.run_once(ra.ctx, metrics.gc)))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Orders a crash left processing are finished before this process serves, even
        # with the GC loop off. Every worker and replica does this as it starts; reconcile
        # is safe to run concurrently, and its threshold spares finalizes still in flight
        # elsewhere. In a thread: on SQLite it may wait on the write lock.
        reconciled = await asyncio.to_thread(gc.reconcile_at_startup, ra.ctx)
        metrics.gc_counters["orders_reconciled"].inc(reconciled)
        for job in jobs:
            job.start()
        try:
            yield
        finally:
            for job in jobs:
                job.stop()
            await va.drain(settings.acme.validation.timeout.total_seconds())
            va.close()
            if redis_store is not None:
                redis_store.close()
            for close in closers:
                close()

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route("/metrics", metrics_endpoint), Route("/health", health)]
    pki_state = PkiState(pki, metrics, pki_limiter(settings), runtime.clock)
    routes += pki_routes(pki_state)
    rest = Starlette(routes=routes, lifespan=lifespan)
    acme = None
    if settings.acme.enabled:
        threads = handler_threads(settings.acme.handler_threads, sqlite=runtime.db.is_sqlite)
        # SQLite answers from local pages and this process's write lock; PostgreSQL and
        # Redis are round trips away, which must not hold up the event loop. Nor may a
        # commit that waits for an fsync (SQLite's FULL without group commit): it would
        # stall every connection of the worker (measured at concurrency 256: 43 flows/s on
        # the event loop against 116 on the threads). With group commit the loop commits
        # and the answer waits for the sync; at concurrency 32 that took a third less CPU
        # per certificate than the threads (certctl.storage.durable).
        inline = issuance_on_the_loop(runtime.db, settings)
        acme = AcmeApp(WfeState(ra, settings.acme, metrics, threads, inline_posts=inline))
        closers.append(acme.close)
    return RequestLogMiddleware(FrontDoor(acme, OcspFastPath(pki_state), rest))


_HEALTH = render(200, [("content-type", "text/plain; charset=utf-8")], b"ok")


class FrontDoor:
    """The hot paths without a framework router in front: everything under /acme/ goes
    to the ACME dispatcher, and OCSP GETs the cache can answer are answered here.
    Everything else, lifespan included, goes to the Starlette app.

    ``answer_now`` is the protocol's quick path (``certctl.fastpath``): the directory,
    newNonce, cached OCSP answers and /health, before any ASGI machinery; ``accept_post``
    its POSTs (the issuance requests, when they may run on the event loop)."""

    def __init__(self, acme: AcmeApp | None, ocsp: OcspFastPath, rest: ASGIApp) -> None:
        self.acme = acme
        self.quick_acme = QuickAcme(acme.state, acme.executor) if acme is not None else None
        self.ocsp = ocsp
        self.rest = rest

    def answer_now(self, request: QuickRequest) -> QuickAnswer | None:
        path = request.path
        if path.startswith(PREFIX):
            return self.quick_acme.answer_now(request) if self.quick_acme is not None else None
        if path.startswith(OCSP_GET_PREFIX):
            return self.ocsp.answer_now(request)
        if path == "/health":
            return _HEALTH
        return None

    def accept_post(self, request: QuickRequest) -> QuickPost | None:
        if self.quick_acme is not None and request.path.startswith(PREFIX):
            return self.quick_acme.accept_post(request)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            # "/acme" itself too: a client that lost the slash gets a problem document.
            if self.acme is not None and (path.startswith(PREFIX) or path == PREFIX[:-1]):
                await self.acme(scope, receive, send)
                return
            if path.startswith(OCSP_GET_PREFIX):
                answer = self.ocsp.answer(scope)
                if answer is not None:
                    await answer(scope, receive, send)
                    return
        await self.rest(scope, receive, send)


def build_va(validation: ValidationSettings) -> ValidationAuthority:
    return ValidationAuthority(
        VASettings(
            resolvers=validation.dns01_resolvers,
            http_port=validation.http_port,
            tls_port=validation.tls_port,
            allow_loopback=validation.allow_loopback,
            allowed_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in validation.networks
            ),
            timeout=validation.timeout.total_seconds(),
            http01_concurrency=validation.http01_concurrency,
            dns01_concurrency=validation.dns01_concurrency,
            tlsalpn01_concurrency=validation.tlsalpn01_concurrency,
        )
    )


def account_urls(settings: Settings, account: Account) -> tuple[str, ...]:
    """Every URL the account is known by (RFC 8657 accounturi): its profile's family and,
    when its profile is the default one, the /acme shorthand."""
    base = external_url(settings)
    urls = [f"{base}/acme/profile/{account.profile_id}/account/{account.id}"]
    if account.profile_id == settings.acme.default_profile_id:
        urls.append(f"{base}/acme/account/{account.id}")
    return tuple(urls)


def external_url(settings: Settings) -> str:
    """The base URL accounts are known by outside (RFC 8657 accounturi)."""
    if settings.acme.external_url:
        return settings.acme.external_url.rstrip("/")
    scheme = "http" if settings.plain_http else "https"
    host = f"[{settings.listen_host}]" if ":" in settings.listen_host else settings.listen_host
    return f"{scheme}://{host}:{settings.listen_port}"


def pki_base_url(settings: Settings) -> str:
    """Where relying parties fetch CRLs and ask OCSP: CERTCTL_PKI_BASE_URL, else the
    external URL. It is written into every leaf, and must match the CRLs' IDP."""
    return settings.acme.pki_base_url or external_url(settings)


def pki_limiter(settings: Settings) -> TokenBucketLimiter | None:
    """The per-client token bucket of the /.well-known/pki routes; None when turned off."""
    rate = settings.acme.pki_rate_limit_per_second
    if rate <= 0:
        return None
    return TokenBucketLimiter(rate, settings.acme.pki_rate_limit_burst)


def issuance_on_the_loop(db: Database, settings: Settings) -> bool:
    """Whether the POSTs of an issuance are answered on the event loop (see build_app)."""
    return db.is_sqlite and not db.commits_wait_for_the_disk and not settings.redis_url


def rate_limit_store(
    settings: Settings, metrics: Metrics
) -> tuple[LimitStore, RedisGcraStore | None]:
    """The ACME limits' store: this process's memory, or Redis (CERTCTL_REDIS_URL) shared by
    every replica, falling back to memory while Redis is down (fail open, per process)."""
    local = MemoryGcraStore()
    if not settings.redis_url:
        return local, None
    shared = RedisGcraStore.from_url(settings.redis_url)
    return FailoverStore(shared, local, on_error=metrics.ratelimit_store_error), shared


def app_from_env() -> ASGIApp:
    """uvicorn factory for worker processes: settings come from the environment, and the
    parent (``certctl serve``) has already migrated and bootstrapped."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level)
    # The server's commits are synced in groups (certctl.storage.durable); with several
    # workers every answer also waits for a sync, as it may have read another's commit.
    return build_app(open_runtime(settings, migrate=False, group_commit=True))
