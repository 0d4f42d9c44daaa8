"""What an operator sees, besides the log lines (service/logs.py): request ids, the access
line, Prometheus metrics (traces: service/tracing.py).

- RequestContext, the outermost middleware of ours, gives each request its id (X-Request-ID),
  writes its one access-log line, counts it in the metrics, and answers 500 to an exception no
  handler took, logging it once.
- Metrics are prometheus_client's, in its multiprocess mode when PROMETHEUS_MULTIPROC_DIR is
  set (`python -m service` sets it for more than one worker).
"""

import asyncio
import functools
import logging
import os
import re
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings
from service.db import Database

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
UNMATCHED = "unmatched"  # the route label of every path that matches no route
# Probes and scrapes would drown the traffic they watch.
_NOT_MEASURED = frozenset({"/health", "/health/live", "/metrics"})

REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ("method", "route", "status"))
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response.",
    ("method", "route", "status"),
)
# livesum: with several workers, a scrape adds up the live processes' pools.
POOL = Gauge(
    "db_pool_connections",
    "Database connections of the pool, by state.",
    ("state",),
    multiprocess_mode="livesum",
)
WAITING = Gauge(
    "db_pool_waiting_requests",
    "Requests waiting for a database connection.",
    multiprocess_mode="livesum",
)


class RequestContext:
    """Per HTTP request: an id, one access-log line, the metrics, and the 500 for a bug.

    Starlette's ServerErrorMiddleware, outside this one, would also answer an unhandled
    exception, but then re-raise it to the server, which logs it a second time.
    """

    def __init__(self, app: ASGIApp, *, access_log: Any, tracing: bool = False) -> None:
        self.app = app
        self.access_log = access_log
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        context = structlog.contextvars.bind_contextvars(request_id=request_id)
        if self.tracing:
            from opentelemetry import trace

            trace.get_current_span().set_attribute("request.id", request_id)
        start = time.perf_counter()
        status = 0
        root_path = scope.get("root_path", "")  # a Mount changes it in the scope it routes

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            response = internal_error(scope["method"], scope["path"], exc)
            if not status:  # else the response is half sent: the server closes it
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = _route(scope, root_path)
            self.access_log.info(
                f"{scope['method']} {route} {status}",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
            )
            if route not in _NOT_MEASURED:
                requests, duration = _series(scope["method"], route, status)
                requests.inc()
                duration.observe(seconds)
            structlog.contextvars.reset_contextvars(**context)


def document_request_ids(app: FastAPI) -> None:
    """X-Request-ID in the OpenAPI schema of every response of every route, as RequestContext
    sends it: FastAPI's schema, extended once, when first asked for (FastAPI's "Extending
    OpenAPI")."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make_schema()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for response in operation["responses"].values():
                        response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER
        return app.openapi_schema or make_schema()

    app.openapi = openapi  # type: ignore[method-assign]


REQUEST_ID_HEADER = {
    "description": "The request's id: yours if you sent a sane one, else a new UUID.",
    "required": True,
    "schema": {"type": "string"},
}


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """The answer to a bug: logged once, with its traceback; the body names the request id."""
    log.error("%s %s failed", method, path, exc_info=exc)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return JSONResponse({"detail": "internal server error", "request_id": request_id}, 500)


@functools.cache
def _series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled series of a kind of request, looked up once: routes and statuses are few."""
    labels = (method, route, str(status))
    return REQUESTS.labels(*labels), DURATION.labels(*labels)


def _route(scope: Scope, root_path: str) -> str:
    """The template of the route that answered, or UNMATCHED. FastAPI's router puts only its
    own routes in the scope, not Starlette's (/openapi.json) or mounts (the docs' files)."""
    route = scope.get("route")
    if route is None:
        app: FastAPI = scope["app"]
        probe = {**scope, "root_path": root_path}
        route = next((r for r in app.routes if r.matches(probe)[0] is not Match.NONE), None)
    return getattr(route, "path_format", UNMATCHED)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            sent: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(sent):
                return sent
            break
    return str(uuid.uuid4())


async def sample_pool(database: Database) -> None:
    """Set the pool gauges every second, until cancelled.

    Not on every request (that cost more than the rest of the metrics), and not only at a
    scrape: with several workers a scrape reaches one of them and reads the others' gauges
    from the files they last wrote.
    """
    while True:
        measure_pool(database)
        await asyncio.sleep(1)


def measure_pool(database: Database) -> None:
    # QueuePools (size, checkedin, checkedout, overflow): the one for writes, the one for reads.
    pools: list[Any] = [database.engine.pool, database.read_engine.pool]
    POOL.labels("in_use").set(sum(pool.checkedout() for pool in pools))
    POOL.labels("idle").set(sum(pool.checkedin() for pool in pools))
    POOL.labels("overflow").set(sum(max(pool.overflow(), 0) for pool in pools))
    waiting = database.gate.waiting
    if database.read_gate is not database.gate:  # SQLite: readers have a gate of their own
        waiting += database.read_gate.waiting
    WAITING.set(waiting)


async def metrics(request: Request) -> Response:
    """GET /metrics, Prometheus's text format; every worker's figures when there are several."""
    measure_pool(request.app.state.database)
    settings: Settings = request.app.state.settings
    registry = REGISTRY
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def forget_this_process(settings: Settings) -> None:
    """At a worker's exit: its gauges leave the multiprocess sums."""
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
