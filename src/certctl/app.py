"""build_app(runtime): the ASGI application. One process type serves everything."""

from __future__ import annotations

import os
import secrets

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certctl.acme.nonce import NonceCodec
from certctl.bootstrap import Runtime, open_runtime
from certctl.config import load_settings
from certctl.observability.logs import RequestLogMiddleware, configure_logging
from certctl.observability.metrics import Metrics
from certctl.ra import RegistrationAuthority
from certctl.storage import secrets as secret_store
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
    ra = RegistrationAuthority(runtime.ra_context, runtime.ca, codec)
    metrics = Metrics()

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route("/metrics", metrics_endpoint), Route("/health", health)]
    if settings.acme.enabled:
        routes += acme_routes(WfeState(ra, settings.acme, metrics))
    app = Starlette(routes=routes)
    app.add_middleware(RequestLogMiddleware)
    app.state.runtime = runtime
    app.state.metrics = metrics
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment, and the
    parent (``certctl serve``) has already migrated and bootstrapped."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level)
    return build_app(open_runtime(settings, migrate=False))
