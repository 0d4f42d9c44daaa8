"""The application: create_app(settings) wires routers, error handlers and the engine."""

import gc
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from service.api import health, items, users
from service.config import ConfigError, Settings, load_settings
from service.db import create_engine, create_sessionmaker
from service.errors import ServiceError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    detail: str


# SQLSTATE classes that mean "the database cannot serve us now", not "bad request": connection
# exception (08), login refused (28), database missing (3D), insufficient resources (53),
# operator intervention such as a statement timeout or a shutdown (57).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "28", "3D", "53", "57")
NOT_MIGRATED = "database schema is not up to date; run `alembic upgrade head`"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_engine(app.state.settings)
    app.state.sessionmaker = create_sessionmaker(engine)
    # What exists now (FastAPI, pydantic, SQLAlchemy, our app) lives as long as the process;
    # frozen, the cyclic collector stops rescanning it on every full collection.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await engine.dispose()
        log.info("database connections closed")


def create_app(settings: Settings, *, alembic_ini: str | None = None) -> FastAPI:
    logging.getLogger("service").setLevel(settings.LOG_LEVEL.upper())
    app = FastAPI(
        title="service",
        summary="Users and their items, on async SQLAlchemy.",
        version="0.1.0",
        lifespan=lifespan,
        responses={503: {"model": ErrorDetail, "description": "Database unavailable or busy"}},
    )
    app.state.settings = settings
    app.state.migration_head = health.migration_head(
        alembic_ini or os.environ.get("ALEMBIC_CONFIG", "alembic.ini")
    )
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(items.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # A pool timeout, or a connection that could not be made (refused, timed out).
    app.add_exception_handler(PoolTimeoutError, _unavailable)
    app.add_exception_handler(OSError, _unavailable)
    app.add_exception_handler(Exception, _internal_error)
    return app


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's own 422, except that its default handler fails (500) on input that the errors
    # echo but JSON output cannot hold: NaN and Infinity (Python's JSON parser takes them),
    # lone surrogates ("\ud800" is valid JSON), a body that is not UTF-8.
    errors = jsonable_encoder(
        exc.errors(),
        custom_encoder={
            str: _scrub_surrogates,
            float: _finite_or_text,
            bytes: lambda b: b.decode(errors="replace"),
            # Instead of `{}`: the message of a ValueError raised by a validator.
            Exception: lambda e: _scrub_surrogates(str(e)),
        },
    )
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # FastAPI answers 400 to a JSON body it cannot read at all; like a JSON syntax error,
    # that is a 422 "JSON decode error", the status the schema documents for bad input.
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
        reason = "not UTF-8" if isinstance(cause, UnicodeDecodeError) else "too large or too deep"
        error: dict[str, Any] = {
            "type": "json_invalid",
            "loc": ("body",),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": f"the body is {reason}"},
        }
        return await _invalid_request(request, RequestValidationError([error]))
    return await http_exception_handler(request, exc)


def _scrub_surrogates(text: str) -> str:
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def _finite_or_text(number: float) -> float | str:
    return number if math.isfinite(number) else json.dumps(number)  # "NaN", "-Infinity"


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def _is_transient(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def _schema_missing(exc: DBAPIError) -> bool:
    # undefined table or column (Postgres 42P01, 42703; SQLite says it in words)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in {"42P01", "42703"} or str(exc.orig).startswith(
        ("no such table", "no such column")
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _schema_missing(exc):
        # Retrying will not help until someone migrates: say so, and no Retry-After.
        log.error("%s %s: database schema is behind the code", request.method, request.url.path)
        return JSONResponse({"detail": NOT_MIGRATED}, status_code=503)
    if _is_transient(exc):
        return await _unavailable(request, exc)
    return await _internal_error(request, exc)


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
        settings = load_settings()
        app = create_app(settings)
    except ConfigError as exc:
        # One clear line instead of a traceback from inside uvicorn.
        raise SystemExit(f"error: {exc}") from None
    # uvicorn configures only its own loggers; give ours a handler in the same format.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     [%(name)s] %(message)s"))
    logging.getLogger("service").addHandler(handler)
    return app


app = _app_from_environment()
