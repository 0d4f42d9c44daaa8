"""Conditional requests (RFC 9110 §13), the domain side: a resource's entity tag is its version
(models.Versioned); If-Match names the versions a write may change, If-None-Match those a
client holds already."""

from dataclasses import dataclass

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm.exc import StaleDataError

from service.db import WriteSession
from service.errors import (
    Conflict,
    PreconditionFailed,
    PreconditionRequired,
    ServiceError,
)
from service.models import Versioned


def etag(resource: Versioned) -> str:
    """A strong entity tag (RFC 9110 §8.8.3): every change moves the version."""
    return f'"{resource.version}"'


def _listed(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",")]


def matches_none(resource: Versioned, if_none_match: str | None) -> bool:
    """Whether If-None-Match leaves a GET to answer in full: the client holds none of the
    resource's version. The weak comparison (§13.1.2): W/"3" names version 3 too."""
    if if_none_match is None:
        return True
    current = etag(resource)
    return not any(
        tag == "*" or tag.removeprefix("W/") == current for tag in _listed(if_none_match)
    )


@dataclass(frozen=True)
class Precondition:
    """A write's If-Match (None: not sent), and whether this service requires one."""

    if_match: str | None
    required: bool = False

    def check(self, resource: Versioned) -> None:
        """428 if If-Match is required and missing; 412, with the current ETag, if it names no
        tag of the resource's version (the strong comparison of §13.1.1; "*" names any)."""
        if self.if_match is None:
            if self.required:
                raise PreconditionRequired("send If-Match with the ETag of what you changed")
            return
        tags = _listed(self.if_match)
        if "*" not in tags and etag(resource) not in tags:
            raise PreconditionFailed(
                "If-Match names no tag of the current version", etag=etag(resource)
            )

    async def delete(
        self, session: WriteSession, resource: Versioned, *, gone: ServiceError
    ) -> None:
        """Delete the resource, if If-Match allows it; as save() does a change."""
        self.check(resource)
        await session.delete(resource)
        await self.save(session, resource, gone=gone)

    async def save(self, session: WriteSession, resource: Versioned, *, gone: ServiceError) -> None:
        """Flush the change to `resource` (or its deletion). If a concurrent write changed it
        first, the UPDATE or DELETE finds no row at the version read: 412 with If-Match, 409
        without, and `gone` if it was deleted. Nothing of this request's is kept."""
        try:
            await session.flush()
        except StaleDataError:
            await session.rollback()
            try:
                await session.refresh(resource)
            except InvalidRequestError:  # no such row any more
                raise gone from None
            if self.if_match is None:
                raise Conflict("changed by another request while this one ran; try again") from None
            raise PreconditionFailed(
                "changed by another request since the version If-Match names", etag=etag(resource)
            ) from None
