"""What a request may cost: a body over MAX_BODY_BYTES is refused with 413 as it streams in (its
Content-Length first, then its chunks as they come), before it is all read.

Not Starlette's RequestBodyLimitMiddleware (FastAPI's max_body_size): its 413 is plain text,
and for a Content-Length over the limit it replaces whatever the app answers, outside our
error handlers. Raised from `receive`, this 413 is an HTTPException, which FastAPI passes on
from reading the body and service/api/errors.py answers as every other error.
"""

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class BodyLimit:
    app: ASGIApp
    limit: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = self._within_limit(receive, Headers(scope=scope).get("content-length", ""))
        await self.app(scope, receive, send)

    def _within_limit(self, receive: Receive, declared: str) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > self.limit:
                raise self._refusal()
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self._refusal()
            return message

        return receive_within_limit

    def _refusal(self) -> HTTPException:
        detail = f"request body larger than {self.limit} bytes (MAX_BODY_BYTES)"
        return HTTPException(413, detail)
