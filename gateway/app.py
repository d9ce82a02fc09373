"""The Starlette application: routes, error handlers, and the event hub's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import admin, metrics
from gateway.admin_auth import FailedAttempts
from gateway.admission import run_housekeeping
from gateway import hub as hub_module
from gateway import openapi, pages, sessions, tus
from gateway.audit import RefusedRequests, RequestAudit
from gateway.config import GatewayConfig, ResultStore
from gateway.errors import HANDLERS
from streams.chunks import SealedBuffers
from streams.connection import RETRYABLE, Redis
from streams.lag import LagTracker


CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS")
CORS_EXPOSED = ("Location", "Upload-Offset", "Upload-Length", "Upload-Expires", "Upload-Metadata", "Upload-Concat",
                "Upload-Token", "Upload-Session-Id", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
                "Tus-Checksum-Algorithm", "Retry-After")
"""What a browser client on another origin must be allowed to read: tus answers are all headers."""


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        await request.app.state.redis.ping()
    except RETRYABLE:
        return JSONResponse({"status": "not ready", "redis": "unreachable"}, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "redis": "ok"})


def create_app(redis: Redis, config: GatewayConfig, results: ResultStore) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.hub.start()
        housekeeping = asyncio.create_task(run_housekeeping(redis, config), name="dodolens-housekeeping")
        try:
            yield
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)
            await app.state.hub.stop()
            await app.state.refused.flush(redis, config.stream)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *sessions.routes,
        *hub_module.routes,
        *tus.routes,
        *openapi.routes,
        *pages.routes,
        *metrics.routes,
        *admin.routes,
    ]
    app_metrics = metrics.Metrics()
    cors = [Middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=list(CORS_METHODS),
                       allow_headers=["*"], expose_headers=list(CORS_EXPOSED), max_age=600)] if config.cors_origins else []
    app = Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan,
                    middleware=[*cors, Middleware(RequestAudit), Middleware(metrics.UploadBytes, metrics=app_metrics)])
    app.state.redis = redis
    app.state.config = config
    app.state.results = results
    app.state.hub = hub_module.Hub(redis, config.stream, config.session_check_interval_s)
    app.state.hub.listeners.append(functools.partial(app_metrics.on_events, redis))
    app.state.metrics = app_metrics
    app.state.lag = LagTracker()
    app.state.admin_attempts = FailedAttempts()
    app.state.refused = RefusedRequests()
    app.state.sealed_buffers = SealedBuffers()
    return app
