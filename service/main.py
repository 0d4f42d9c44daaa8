"""The application: create_app(settings) wires routers, errors, observability and the database."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from service import logs, observability, tracing
from service.api import auth, errors, health, items, users
from service.api.idempotency import REPLAYED
from service.api.limits import BodyLimit
from service.api.routing import claim_literal_paths
from service.auth import LoginLock
from service.config import ConfigError, Settings, load_settings
from service.db import open_database

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# What a script in a browser on another origin may send, and read of the answer.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
]
CORS_RESPONSE_HEADERS = ["ETag", "Location", "X-Request-ID", "Retry-After", REPLAYED]

# The busiest first: a request is matched against the routes in this order.
ROUTERS = (users.router, items.router, auth.router, health.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    log.info("database: %s", settings.database_description())
    database = app.state.database = open_database(settings)
    tracer_provider: TracerProvider | None = app.state.tracer_provider
    if tracer_provider is not None:
        tracing.trace_statements(database, tracer_provider)
    # What exists now (FastAPI, pydantic, SQLAlchemy, our app) lives as long as the process;
    # frozen, the cyclic collector stops rescanning it on every full collection.
    gc.collect()
    gc.freeze()
    sampling = asyncio.create_task(observability.sample_pool(database))
    try:
        yield
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        await database.dispose()
        log.info("database connections closed")
        observability.forget_this_process(settings)
        if tracer_provider is not None:
            tracing.untrace_statements()
            tracer_provider.shutdown()  # sends the spans still buffered


def create_app(settings: Settings, *, tracer_provider: "TracerProvider | None" = None) -> FastAPI:
    """The app for these settings. Traces go to `tracer_provider` if given, else over OTLP
    when OTEL_EXPORTER_OTLP_ENDPOINT is set. Logging is the process's: see service/logs.py."""
    # FastAPI with /docs and /redoc served from the package's own files, not a CDN.
    app = FastAPIOffline(
        title="service",
        summary="Users and their items, on async SQLAlchemy.",
        version="0.1.0",
        lifespan=lifespan,
        responses=errors.COMMON_RESPONSES,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.migrations = health.read_migrations(str(settings.ALEMBIC_CONFIG))
    app.state.login_lock = LoginLock(
        settings.LOGIN_MAX_FAILURES, timedelta(seconds=settings.LOGIN_WINDOW)
    )
    claim_literal_paths(app, ROUTERS)  # before the routers: it says why
    for router in ROUTERS:
        app.include_router(router)
    app.get("/metrics", include_in_schema=False)(observability.metrics)
    observability.document_request_ids(app)
    errors.install(app)
    if tracer_provider is None and settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        tracer_provider = tracing.otlp_tracer_provider()
    app.state.tracer_provider = tracer_provider
    if settings.CORS_ORIGINS:
        # Inside RequestContext, so that a preflight gets its request id and access line too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )
    app.add_middleware(BodyLimit, limit=settings.MAX_BODY_BYTES)
    app.add_middleware(
        observability.RequestContext,
        access_log=logs.access_logger(settings),
        tracing=tracer_provider is not None,
    )
    if tracer_provider is not None:
        tracing.trace_requests(app, tracer_provider)  # outermost: spans the whole request
    return app


def _app_from_environment() -> FastAPI:
    try:
        settings = load_settings()
        logs.configure(settings)
        return create_app(settings)
    except ConfigError as exc:
        # One clear line instead of a traceback from inside uvicorn.
        raise SystemExit(f"error: {exc}") from None


app = _app_from_environment()
