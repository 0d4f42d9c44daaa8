"""Conditional requests (RFC 9110 §13) for every resource alike: the ETag of what a route
answers, 304 for a GET whose If-None-Match names it, If-Match for a write (checked by
service/preconditions.py), and what each documents in the OpenAPI schema.

The dependencies read their header from the request, and the route options below document it
(openapi_extra), rather than declaring it a FastAPI Header parameter: one such parameter cost
about 80,000 instructions a request, 2.5 % of a PATCH (docs/benchmark.md).
"""

from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response, status

from service.api.errors import documented, header, header_parameter
from service.config import Settings
from service.errors import (
    Conflict,
    Forbidden,
    NotAuthenticated,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ServiceError,
)
from service.models import Versioned
from service.preconditions import Precondition, etag, matches_none

R = TypeVar("R", bound=Versioned)

ETAG = header(
    "The version of the resource: send it as If-Match to change this version only, as"
    " If-None-Match to read it again only once it has changed."
)
_TAGGED: dict[int | str, dict[str, Any]] = {200: {"headers": {"ETag": ETAG}}}
_NOT_MODIFIED = "Not modified: If-None-Match names the current version (no body)"
_IF_NONE_MATCH = header_parameter(
    "If-None-Match", "ETags you hold: 304 without a body if one is the current version's."
)
_IF_MATCH = header_parameter(
    "If-Match",
    'The ETag of the version your change was made from, or "*": a stale one is refused with'
    " 412 and the current ETag, and nothing changes.",
)
_FRESH = _TAGGED | {304: {"description": _NOT_MODIFIED, "headers": {"ETag": ETAG}}}
_WRITE_ERRORS = documented(
    NotAuthenticated, NotFound, Forbidden, PreconditionFailed, PreconditionRequired, Conflict
)


# The options of the routes of one resource (`@router.get(..., **READ_ONE)`): what they answer,
# and the header they read.
def reads_one(*errors: type[ServiceError]) -> dict[str, Any]:
    """The options of a route that reads one resource and raises `errors`."""
    return {
        "responses": documented(*errors) | _FRESH,
        "openapi_extra": {"parameters": [_IF_NONE_MATCH]},
    }


READ_ONE = reads_one(NotAuthenticated, NotFound)
CHANGE_ONE: dict[str, Any] = {
    "responses": _WRITE_ERRORS | _TAGGED,
    "openapi_extra": {"parameters": [_IF_MATCH]},
}
DELETE_ONE: dict[str, Any] = {
    "status_code": status.HTTP_204_NO_CONTENT,
    "response_class": Response,
    "responses": _WRITE_ERRORS,
    "openapi_extra": {"parameters": [_IF_MATCH]},
}


@dataclass(frozen=True)
class Read:
    """What a GET of one resource answers: it, with its ETag, or 304 and no body if the
    client holds its version already (If-None-Match)."""

    response: Response
    if_none_match: str | None

    def __call__(self, resource: R) -> R | Response:
        if matches_none(resource, self.if_none_match):
            self.response.headers["ETag"] = etag(resource)
            return resource
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(resource)})


@dataclass(frozen=True)
class Write(Precondition):
    """A write's If-Match (the domain checks it), and the response its ETag goes on."""

    response: Response = field(kw_only=True)

    def tagged(self, resource: R) -> R:
        """The resource, its new ETag on the response."""
        self.response.headers["ETag"] = etag(resource)
        return resource


# Dependencies are coroutines: FastAPI runs a plain function's in a worker thread.
async def read_one(request: Request, response: Response) -> Read:
    return Read(response, request.headers.get("if-none-match"))


async def if_match(request: Request, response: Response) -> Write:
    settings: Settings = request.app.state.settings
    return Write(
        request.headers.get("if-match"), required=settings.REQUIRE_IF_MATCH, response=response
    )


ReadOne = Annotated[Read, Depends(read_one)]
IfMatch = Annotated[Write, Depends(if_match)]
