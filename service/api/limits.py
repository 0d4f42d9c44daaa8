"""What a request may cost: a body over MAX_BODY_BYTES is refused with 413 as it streams in (its
Content-Length first, then a chunked body's chunks as they come), before it is all read.

Not Starlette's RequestBodyLimitMiddleware (FastAPI's max_body_size): its 413 is plain text,
and for a Content-Length over the limit it replaces whatever the app answers, outside our
error handlers. Raised from `receive`, this 413 is an HTTPException, which FastAPI passes on
from reading the body and service/api/errors.py answers as every other error.
"""

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class BodyLimit:
    app: ASGIApp
    limit: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = self._within_limit(scope, receive)
        await self.app(scope, receive, send)

    def _within_limit(self, scope: Scope, receive: Receive) -> Receive:
        for name, value in scope["headers"]:
            if name == b"content-length":
                # The server reads no more than it says: nothing to count.
                return receive if value.isdigit() and int(value) <= self.limit else self._refuse
            if name == b"transfer-encoding":
                return self._counting(receive)
        return receive  # no body

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse()
            return message

        return receive_within_limit

    async def _refuse(self) -> Message:
        detail = f"request body larger than {self.limit} bytes (MAX_BODY_BYTES)"
        raise HTTPException(413, detail)
