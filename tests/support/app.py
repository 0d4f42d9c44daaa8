"""The service's app on a database, and clients that talk to it in-process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import URL
from starlette.types import ASGIApp

from service.main import create_app
from tests.support.databases import settings_for

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def app_for(
    url: URL,
    *routers: APIRouter,
    tracer_provider: "TracerProvider | None" = None,
    **overrides: Any,
) -> FastAPI:
    """The service's app on `url`, with `routers` added; timeouts short, for a test."""
    settings = settings_for(url, **({"DB_CONNECT_TIMEOUT": 2, "DB_POOL_TIMEOUT": 2} | overrides))
    app = create_app(settings, tracer_provider=tracer_provider)
    for router in routers:
        app.include_router(router)
    return app


def client_of(app: ASGIApp, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client that talks to `app` in-process. It re-raises an exception that reaches the
    server (httpx's raise_app_exceptions): one the app should have answered fails the test."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@asynccontextmanager
async def serve(
    url: URL,
    *routers: APIRouter,
    tracer_provider: "TracerProvider | None" = None,
    **overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on `url` (see app_for) on its own engine, as uvicorn runs it:
    lifespan included."""
    app = app_for(url, *routers, tracer_provider=tracer_provider, **overrides)
    async with app.router.lifespan_context(app), client_of(app) as client:
        yield client
