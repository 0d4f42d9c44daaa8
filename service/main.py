"""The application: create_app(settings) wires routers, error handlers and the engine."""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.api import health, items, users
from service.config import ConfigError, Settings, load_settings
from service.db import create_engine, create_sessionmaker
from service.errors import ServiceError

log = logging.getLogger(__name__)

# What a lost or saturated database looks like from here: the client should retry later.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, OSError)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_engine(app.state.settings)
    app.state.sessionmaker = create_sessionmaker(engine)
    try:
        yield
    finally:
        await engine.dispose()


def create_app(settings: Settings, *, alembic_ini: str | None = None) -> FastAPI:
    logging.getLogger("service").setLevel(settings.LOG_LEVEL.upper())
    app = FastAPI(
        title="service",
        summary="Users and their items, on async SQLAlchemy.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.migration_head = health.migration_head(
        alembic_ini or os.environ.get("ALEMBIC_CONFIG", "alembic.ini")
    )
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(items.router)
    app.add_exception_handler(ServiceError, _service_error)
    for exc_type in _UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _internal_error)
    return app


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The type only: SQLAlchemy's message carries the statement and its parameters.
    log.warning(
        "%s %s: database unavailable (%s)", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        {"detail": "database unavailable, try again later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def _app_from_environment() -> FastAPI:
    try:
        return create_app(load_settings())
    except ConfigError as exc:
        # One clear line instead of a traceback from inside uvicorn.
        raise SystemExit(f"error: {exc}") from None


app = _app_from_environment()
