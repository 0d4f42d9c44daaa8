"""What a route that creates answers: 201 with Location and ETag; and, for a request with an
Idempotency-Key, the first response again when the request is repeated, nothing created twice
(service/idempotency.py keeps the responses)."""

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from service import idempotency
from service.api.conditional import ETAG
from service.api.errors import header, header_parameter
from service.config import Settings
from service.db import WriteSession
from service.models import Versioned
from service.preconditions import etag

REPLAYED = "Idempotent-Replayed"
# What a route that creates documents, besides its errors.
CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "headers": {
            "Location": header("Where the new resource is."),
            "ETag": ETAG,
            REPLAYED: header(
                "true: the first response to this Idempotency-Key, again", required=False
            ),
        }
    }
}

# Read from the request, documented by IDEMPOTENT: see service/api/conditional.py for why.
_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_KEY = re.compile(_KEY_PATTERN)
# The openapi_extra of a route that creates.
IDEMPOTENT: dict[str, Any] = {
    "parameters": [
        header_parameter(
            "Idempotency-Key",
            "Any string of your own, new for each create (a UUID): a repeat of the request"
            " with it gets the first response again, and creates nothing.",
            pattern=_KEY_PATTERN,
        )
    ]
}


class Creation:
    """The reply of one create, for its route: see the module's docstring."""

    def __init__(self, request: Request, key: str | None, ttl: timedelta) -> None:
        self.request = request
        self.key = key
        self.ttl = ttl
        self._caller_id = 0
        self._fingerprint = ""

    async def replay(
        self, session: WriteSession, *, caller_id: int | None, password: str | None = None
    ) -> Response | None:
        """The first response, if this request repeats one (`caller_id` None: a sign-up,
        whose key is its own; `password`: the one it sets). 409 while that one is still in
        progress; 422 if the key came with another request. `session` is the route's: the
        key is kept in the transaction that creates."""
        if self.key is None:
            return None
        self._caller_id = caller_id or 0
        body: Any = await self.request.json()  # parsed by FastAPI already
        if isinstance(body, dict):  # a password is not stored, not even hashed this fast
            body = {name: value for name, value in body.items() if name != "password"}
        self._fingerprint = idempotency.fingerprint(
            self.request.method, self.request.url.path, self._caller_id, body
        )
        try:
            first = await idempotency.first_response(
                session,
                caller_id=self._caller_id,
                key=self.key,
                fingerprint=self._fingerprint,
                password=password,
            )
        except idempotency.KeyReused:
            message = "this Idempotency-Key came with another request; use a new one"
            raise _invalid_key(self.key, message, "idempotency_key_reused") from None
        if first is None:
            return None
        headers = first.headers | {REPLAYED: "true"}
        return Response(first.body, first.status_code, headers, media_type="application/json")

    def created(
        self,
        session: WriteSession,
        resource: Versioned,
        read: type[BaseModel],
        *,
        location: str,
        password_hash: str | None = None,
    ) -> Response:
        """201: the resource as `read` shows it, where it is, and its ETag; kept for a repeat
        when the request came with a key (with the hash of the password it set, if any)."""
        body = read.model_validate(resource).model_dump_json()
        headers = {"Location": location, "ETag": etag(resource)}
        if self.key is not None:
            if not self._fingerprint:
                raise RuntimeError("a route that creates calls replay() before it writes")
            idempotency.remember(
                session,
                caller_id=self._caller_id,
                key=self.key,
                fingerprint=self._fingerprint,
                ttl=self.ttl,
                status_code=status.HTTP_201_CREATED,
                headers=headers,
                body=body,
                password_hash=password_hash,
            )
        return Response(body, status.HTTP_201_CREATED, headers, media_type="application/json")


# Not given the session: a dependency that shares the route's cached SessionDep has FastAPI
# solve that dependency's own parameters again (fastapi/fastapi#11323), 60,000 instructions.
async def creation(request: Request) -> Creation:
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.fullmatch(key):
        message = "Idempotency-Key must be 1 to 255 printable ASCII characters"
        pattern = {"pattern": _KEY_PATTERN}  # the ctx of FastAPI's own pattern errors
        raise _invalid_key(key, message, "string_pattern_mismatch", ctx=pattern)
    settings: Settings = request.app.state.settings
    return Creation(request, key, timedelta(seconds=settings.IDEMPOTENCY_TTL))


def _invalid_key(key: str, message: str, kind: str, **ctx: Any) -> RequestValidationError:
    """A 422 in FastAPI's shape, about the request's Idempotency-Key."""
    error = {"type": kind, "loc": ("header", "Idempotency-Key"), "msg": message, "input": key}
    return RequestValidationError([error | ctx])


CreationDep = Annotated[Creation, Depends(creation)]
