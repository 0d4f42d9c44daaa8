"""The application: create_app(settings) wires routers, error handling and the database."""

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import auth, errors, health, items, users
from service.config import ConfigError, Settings, load_settings
from service.db import ConnectionGate, Database, create_engine

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings)
    slots = settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW
    if engine.dialect.name == "sqlite":
        # Every transaction takes SQLite's one write lock (BEGIN IMMEDIATE): more than one
        # at a time would only move the queue into SQLite's busy handler, which sleeps and
        # polls, instead of this gate, which hands over at once and in order.
        slots = 1
    app.state.database = Database(engine, ConnectionGate(slots, settings.DB_POOL_TIMEOUT))
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
        responses=errors.openapi_errors(),
    )
    app.state.settings = settings
    app.state.migration_head = health.migration_head(
        alembic_ini or os.environ.get("ALEMBIC_CONFIG", "alembic.ini")
    )
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(items.router)
    errors.install(app)
    return app


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
