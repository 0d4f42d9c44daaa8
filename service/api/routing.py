"""What the router does not do by itself: a 405's Allow names every method of the path, and a
path a route names literally is a resource of its own."""

import re
from collections.abc import Iterable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Route

_HTTP_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})


def allowed(request: Request) -> str:
    """The Allow header of a 405: every method of the path (RFC 9110), where the router names
    only those of the first route that matched it (https://github.com/fastapi/fastapi/issues/4478)."""
    return ", ".join(sorted(_methods_of(request.app, request.url.path)))


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
