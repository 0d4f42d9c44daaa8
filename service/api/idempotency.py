"""What a route that creates answers: 201 with Location and ETag; and, for a request with an
Idempotency-Key, the first response again when the request is repeated, nothing created twice
(service/idempotency.py keeps the responses)."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from service import idempotency
from service.api.conditional import ETAG
from service.api.deps import SessionDep
from service.api.errors import header
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

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Any string of your own, new for each create (a UUID): a repeat of the"
        " request with it gets the first response again, and creates nothing.",
    ),
]


class Creation:
    """The reply of one create, for its route: see the module's docstring."""

    def __init__(
        self, request: Request, session: WriteSession, key: str | None, ttl: timedelta
    ) -> None:
        self.request = request
        self.session = session
        self.key = key
        self.ttl = ttl
        self._caller_id = 0
        self._fingerprint = ""

    async def replay(self, caller_id: int | None, password: str | None = None) -> Response | None:
        """The first response, if this request repeats one (`caller_id` None: a sign-up,
        whose key is its own; `password`: the one it sets). 409 while that one is still in
        progress; 422 if the key came with another request."""
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
                self.session,
                caller_id=self._caller_id,
                key=self.key,
                fingerprint=self._fingerprint,
                password=password,
            )
        except idempotency.KeyReused:
            raise RequestValidationError(
                [
                    {
                        "type": "idempotency_key_reused",
                        "loc": ("header", "Idempotency-Key"),
                        "msg": "this Idempotency-Key came with another request; use a new one",
                        "input": self.key,
                    }
                ]
            ) from None
        if first is None:
            return None
        headers = first.headers | {REPLAYED: "true"}
        return Response(first.body, first.status_code, headers, media_type="application/json")

    def created(
        self,
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
                self.session,
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


async def creation(request: Request, session: SessionDep, key: IdempotencyKey = None) -> Creation:
    settings: Settings = request.app.state.settings
    return Creation(request, session, key, timedelta(seconds=settings.IDEMPOTENCY_TTL))


CreationDep = Annotated[Creation, Depends(creation)]
