"""How errors become responses: one handler per kind, and the 500 for everything else.

ServiceError (service/errors.py)   its status_code, {"detail": ...}
RequestValidationError             422, FastAPI's list of errors, safe to write out
HTTPException                      as FastAPI answers, but 400 -> 422, and 405 naming the methods
                                   of the path (/users/me is a path of its own)
DatabaseUnavailable, pool timeout  503, Retry-After; the log names the cause and the database
DBAPIError                         503 if the database is down, busy or its schema does not match
                                   the code; else 500
anything else                      500, logged once with its traceback (ServerErrors)
"""

import json
import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Route

from service.db import Database, DatabaseUnavailable, unavailable_reason
from service.errors import ServiceError

log = logging.getLogger(__name__)

# Behind (not migrated yet) or ahead (a newer release's migrations dropped what this code
# uses): /health tells which, and whether `alembic upgrade head` is the fix.
NOT_MIGRATED = (
    "database schema does not match the code: a table or column is missing"
    " (GET /health says whether to run `alembic upgrade head`)"
)
UNAVAILABLE = "database unavailable, try again later"
HIDDEN = "[hidden]"

_SCHEMA_MISSING_SQLSTATES = ("42P01", "42703")  # undefined table, undefined column
_HTTP_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})


class ErrorDetail(BaseModel):
    detail: str


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    app.add_exception_handler(PoolTimeoutError, _unavailable)
    app.add_exception_handler(DBAPIError, _database_error)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's own 422, except that its default handler fails (500) on input that the errors
    # echo but JSON output cannot hold: NaN and Infinity (Python's JSON parser takes them),
    # lone surrogates ("\ud800" is valid JSON), a body that is not UTF-8.
    errors = jsonable_encoder(
        [_hide_passwords(error) for error in exc.errors()],
        custom_encoder={
            str: _scrub_surrogates,
            float: _finite_or_text,
            bytes: lambda b: b.decode(errors="replace"),
            # Instead of `{}`: the message of a ValueError raised by a validator.
            Exception: lambda e: _scrub_surrogates(str(e)),
        },
    )
    return JSONResponse({"detail": errors}, status_code=422)


def _hide_passwords(error: dict[str, Any]) -> dict[str, Any]:
    """The error without the value of any password field it would echo."""
    if error["loc"] and error["loc"][-1] == "password":
        return error | {"input": HIDDEN}
    return error | {"input": _without_passwords(error.get("input"))}


def _without_passwords(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: HIDDEN if k == "password" else _without_passwords(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_passwords(v) for v in value]
    return value


def _scrub_surrogates(text: str) -> str:
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def _finite_or_text(number: float) -> float | str:
    return number if math.isfinite(number) else json.dumps(number)  # "NaN", "-Infinity"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # Our code raises no 400: this is FastAPI failing to parse a body that is not UTF-8,
        # nested too deep or holds too large a number. Like a JSON syntax error, that is a
        # 422 "JSON decode error", the status the schema documents for bad input.
        error = {
            "type": "json_invalid",
            "loc": ("body",),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "the body is not UTF-8, or too deep or too large to parse"},
        }
        return await _invalid_request(request, RequestValidationError([error]))
    if exc.status_code == 405:
        # The router names only the methods of the first route whose path matched; the Allow
        # header must list every method the path supports (RFC 9110).
        allowed = ", ".join(sorted(_methods_of(request.app, request.url.path)))
        exc = HTTPException(405, exc.detail, headers={"Allow": allowed})
    return await http_exception_handler(request, exc)


def _methods_of(app: FastAPI, path: str) -> set[str]:
    """The methods some route serves at `path`; where a route names the path literally, only
    those (at /users/me, GET: not /users/{user_id}'s, which cannot succeed for "me"). The
    API's routes come from its OpenAPI schema (FastAPI keeps the routes of included routers out
    of app.routes), the documentation's own (/docs, /openapi.json) from app.routes."""
    served: dict[str, set[str]] = {}
    for template, operations in app.openapi()["paths"].items():
        served[template] = {method.upper() for method in operations}
    for route in app.routes:
        if isinstance(route, Route) and route.methods and route.endpoint is not _not_allowed:
            served.setdefault(route.path, set()).update(route.methods)
    if path in served:
        return served[path]
    methods: set[str] = set()
    for template, template_methods in served.items():
        if re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path):
            methods |= template_methods
    return methods


def claim_literal_paths(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Make a path that a route names literally a resource of its own, though a templated
    route matches it too: PATCH /users/me answers 405, not PATCH /users/{user_id}'s 422 for
    the id "me". Call it before including the routers: the router takes the first route that
    matches fully, and the one added here matches every method but the literal routes' own,
    which go on to them."""
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    templates = [route.path_regex for route in routes if route.param_convertors]
    literal: dict[str, set[str]] = {}
    for route in routes:
        if route.param_convertors or not any(t.fullmatch(route.path) for t in templates):
            continue
        literal.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in literal.items():
        others = sorted(_HTTP_METHODS - methods)
        app.add_route(path, _not_allowed, methods=others, include_in_schema=False)


async def _not_allowed(_request: Request) -> Response:
    raise HTTPException(405)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    database: Database = request.app.state.database
    reason = unavailable_reason(exc, database.engine.url)
    if reason is None:
        raise exc  # a bug, not an outage: RequestContext answers 500
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, reason)
    return JSONResponse({"detail": UNAVAILABLE}, status_code=503, headers={"Retry-After": "1"})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    message = str(exc.orig)
    if sqlstate in _SCHEMA_MISSING_SQLSTATES or message.startswith(
        ("no such table", "no such column")
    ):
        # Retrying will not help until someone migrates: say so, and no Retry-After. The
        # message names the table or column (`relation "users" does not exist`), no values.
        log.error(
            "%s %s: database schema does not match the code: %s",
            request.method,
            request.url.path,
            message,
        )
        return JSONResponse({"detail": NOT_MIGRATED}, status_code=503)
    return await _unavailable(request, exc)


def openapi_errors() -> dict[int | str, dict[str, Any]]:
    return {503: {"model": ErrorDetail, "description": "Database unavailable or busy"}}
