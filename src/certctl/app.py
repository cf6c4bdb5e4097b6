"""build_app(runtime): the ASGI application. One process type serves everything."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certctl.acme.nonce import NonceCodec
from certctl.bootstrap import Runtime, open_runtime
from certctl.config import Settings, ValidationSettings, load_settings
from certctl.domain.model import Account
from certctl.observability.logs import RequestLogMiddleware, configure_logging
from certctl.observability.metrics import Metrics
from certctl.pki import PkiState, pki_routes
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
from certctl.va import ValidationAuthority, VASettings
from certctl.wfe.routes import WfeState, acme_routes

NONCE_KEY = "acme_nonce_hmac_key"


def build_app(runtime: Runtime) -> Starlette:
    settings = runtime.settings
    with runtime.db.write() as conn:
        # Shared by every worker and replica, so a nonce minted by one is honoured by all.
        key = secret_store.get_or_create(
            conn, NONCE_KEY, lambda: secrets.token_bytes(32), runtime.clock()
        )
    codec = NonceCodec(key, settings.acme.nonce_ttl, runtime.clock)
    metrics = Metrics()
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

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route("/metrics", metrics_endpoint), Route("/health", health)]
    routes += pki_routes(PkiState(pki, metrics, pki_limiter(settings), runtime.clock))
    if settings.acme.enabled:
        routes += acme_routes(WfeState(ra, settings.acme, metrics))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(RequestLogMiddleware)
    app.state.runtime = runtime
    app.state.metrics = metrics
    return app


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


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment, and the
    parent (``certctl serve``) has already migrated and bootstrapped."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level)
    return build_app(open_runtime(settings, migrate=False))
