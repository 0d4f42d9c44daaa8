"""Conditional requests (RFC 9110 §13) for every resource alike: the ETag of what a route
answers, 304 for a GET whose If-None-Match names it, If-Match for a write (service/preconditions.py
checks it)."""

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response, status

from service.api.errors import header
from service.config import Settings
from service.models import Versioned
from service.preconditions import Precondition, etag, matches_none

R = TypeVar("R", bound=Versioned)

ETAG = header(
    "The version of the resource: send it as If-Match to change this version only, as"
    " If-None-Match to read it again only once it has changed."
)
# What a route answering one resource documents, besides its errors.
TAGGED: dict[int | str, dict[str, Any]] = {200: {"headers": {"ETag": ETAG}}}
READ: dict[int | str, dict[str, Any]] = TAGGED | {
    304: {
        "description": "Not modified: If-None-Match names the current version (no body)",
        "headers": {"ETag": ETAG},
    }
}

IfNoneMatch = Annotated[
    str | None,
    Header(description="ETags you hold: 304 without a body if one is the current version's."),
]


def if_match(
    request: Request,
    header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The ETag of the version your change was made from, or "*": a stale one'
            " is refused with 412 and the current ETag, and nothing changes.",
        ),
    ] = None,
) -> Precondition:
    settings: Settings = request.app.state.settings
    return Precondition(header, required=settings.REQUIRE_IF_MATCH)


IfMatch = Annotated[Precondition, Depends(if_match)]


def tagged(response: Response, resource: R) -> R:
    """The resource, its ETag on the response."""
    response.headers["ETag"] = etag(resource)
    return resource


def current(response: Response, resource: R, if_none_match: str | None) -> R | Response:
    """What a GET answers: the resource with its ETag, or 304 and no body if the client holds
    its version already."""
    if matches_none(resource, if_none_match):
        return tagged(response, resource)
    return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(resource)})
