"""Errors the domain raises; each carries the HTTP status it maps to and, as its docstring, what
that status means to a client: service/api/errors.py answers them and documents them in the
OpenAPI schema of the routes that raise them.

ServiceError
 ├── NotAuthenticated       401  WWW-Authenticate: Bearer
 ├── Forbidden              403
 ├── NotFound               404
 ├── Conflict               409
 ├── PreconditionFailed     412  ETag
 ├── PreconditionRequired   428
 └── TooManyAttempts        429  Retry-After
"""

from typing import ClassVar, TypeVar

T = TypeVar("T")


class ServiceError(Exception):
    status_code = 500
    # The headers an answer of this class always has, and what each says (for the OpenAPI schema).
    sends: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotAuthenticated(ServiceError):
    """Not signed in: no valid bearer token (or, logging in, a wrong email or password)."""

    status_code = 401
    sends: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer: send a bearer token."}

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """Signed in, but not as the owner of what the request would change."""

    status_code = 403


class NotFound(ServiceError):
    """No such user or item."""

    status_code = 404


def found(value: T | None, what: str) -> T:
    """The value a query found, or NotFound naming `what` ("item 7")."""
    if value is None:
        raise NotFound(f"{what} not found")
    return value


class Conflict(ServiceError):
    """Taken already (an email that another user has), changed by another request while this
    one ran, or a request with the same Idempotency-Key still in progress: try again."""

    status_code = 409


class PreconditionFailed(ServiceError):
    """If-Match names a version the resource is no longer at: nothing was changed. ETag has the
    version it is at; read it again, then retry."""

    status_code = 412
    sends: ClassVar[dict[str, str]] = {"ETag": "The version the resource is at."}

    def __init__(self, detail: str, *, etag: str | None) -> None:
        super().__init__(detail, headers=None if etag is None else {"ETag": etag})


class PreconditionRequired(ServiceError):
    """This service requires If-Match on writes to a resource (REQUIRE_IF_MATCH): send the
    ETag of the version the change was made from."""

    status_code = 428


class TooManyAttempts(ServiceError):
    """Too many failed logins for this email: locked until the time in Retry-After."""

    status_code = 429
    sends: ClassVar[dict[str, str]] = {"Retry-After": "Seconds until the lock lifts."}

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
