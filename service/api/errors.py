"""How errors become responses, and how routes document them.

ServiceError (service/errors.py)  its status code and {"detail": ...}; `documented(...)` puts the
                                  ones a route raises in its OpenAPI responses
RequestValidationError            422, FastAPI's list of errors, made safe to send
HTTPException (FastAPI's own)     as FastAPI answers it; a 405 names every method of the path
DatabaseUnavailable               503, Retry-After; the log names the cause and the database
DBAPIError                        503 when the database cannot serve, or lacks a table or column
                                  the code uses; else a bug: a 500, as for any other exception
"""

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from service.api import routing
from service.db import Database
from service.errors import ServiceError
from service.observability import internal_error
from service.outages import DatabaseUnavailable, unavailable_reason

log = logging.getLogger(__name__)

# Behind (not migrated yet) or ahead (a newer release's migrations dropped what this code
# uses): /health tells which, and whether `alembic upgrade head` is the fix.
NOT_MIGRATED = (
    "database schema does not match the code: a table or column is missing"
    " (GET /health says whether to run `alembic upgrade head`)"
)
UNAVAILABLE = "database unavailable, try again later"
HIDDEN = "[hidden]"
# A 422 stays a few KB, however large the body that caused it.
MAX_ERRORS = 10
ECHOED = 100

_SCHEMA_MISSING_SQLSTATES = ("42P01", "42703")  # undefined table, undefined column


class ErrorDetail(BaseModel):
    detail: str


def header(description: str, *, required: bool = True) -> dict[str, Any]:
    """A response header, as OpenAPI describes one."""
    return {"description": description, "required": required, "schema": {"type": "string"}}


def header_parameter(name: str, description: str, **schema: Any) -> dict[str, Any]:
    """An optional request header, as OpenAPI describes one (for a route's openapi_extra)."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def documented(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a route that raises these errors: each class knows its own."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        responses[error.status_code] = {"model": ErrorDetail, "description": error.__doc__}
        if error.sends:
            sent = {name: header(description) for name, description in error.sends.items()}
            responses[error.status_code]["headers"] = sent
    return responses


# What any route may answer, besides its own errors.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    # FastAPI's own, for a body it cannot even parse (not UTF-8, nested too deep, a number too
    # large); a body that is not JSON at all is a 422 (https://github.com/fastapi/fastapi/pull/14400).
    400: {"model": ErrorDetail, "description": "The request's body could not be parsed"},
    405: {
        "model": ErrorDetail,
        "description": "Method not allowed: Allow names those this path serves",
        "headers": {"Allow": header("The methods this path serves.")},
    },
    413: {"model": ErrorDetail, "description": "The request's body is larger than MAX_BODY_BYTES"},
    503: {
        "model": ErrorDetail,
        "description": "Database unavailable or busy",
        "headers": {
            "Retry-After": header("Seconds to wait; not sent while the schema lags", required=False)
        },
    },
}


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    app.add_exception_handler(PoolTimeoutError, _unavailable)
    app.add_exception_handler(DBAPIError, _database_error)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, bounded, without the value of any password field, and safe to send.

    Bounded: at most MAX_ERRORS errors, each echoing at most ECHOED characters of its input
    and of each part of its location, whatever the size of the body. Safe: FastAPI's own
    handler fails (500) on input that the errors echo but JSON output cannot hold: NaN and
    Infinity (https://github.com/fastapi/fastapi/issues/459), lone surrogates ("\ud800" is
    valid JSON), bytes that are not UTF-8."""
    assert isinstance(exc, RequestValidationError)
    errors = [_bounded(_hide_passwords(error)) for error in exc.errors()[:MAX_ERRORS]]
    if len(exc.errors()) > MAX_ERRORS:
        more = len(exc.errors()) - MAX_ERRORS
        errors.append({"type": "too_many_errors", "loc": ["body"], "msg": f"and {more} more"})
    errors = jsonable_encoder(
        errors,
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


def _bounded(error: dict[str, Any]) -> dict[str, Any]:
    bounded = error | {"loc": [_cut(part) for part in error["loc"]], "msg": _cut(error["msg"])}
    if "input" in error:
        bounded["input"] = _cut(error["input"])
    if "ctx" in error:
        bounded["ctx"] = {key: _cut(value) for key, value in error["ctx"].items()}
    return bounded


def _cut(value: Any) -> Any:
    """The value, or the first ECHOED characters of its text (of its JSON, for a list or a
    dict) and an ellipsis."""
    if isinstance(value, str):
        return value if len(value) <= ECHOED else value[:ECHOED] + "…"
    if isinstance(value, dict | list | tuple):
        text = ""
        for chunk in json.JSONEncoder(default=str).iterencode(value):
            text += chunk
            if len(text) > ECHOED:
                return text[:ECHOED] + "…"
    return value


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
    if exc.status_code == 405:
        exc = HTTPException(405, exc.detail, headers={"Allow": routing.allowed(request)})
    return await http_exception_handler(request, exc)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    database: Database = request.app.state.database
    reason = unavailable_reason(exc, database.engine.url) or type(exc).__name__
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
    database: Database = request.app.state.database
    if unavailable_reason(exc, database.engine.url) is None:
        return internal_error(request.method, request.url.path, exc)  # a bug, not an outage
    return await _unavailable(request, exc)
