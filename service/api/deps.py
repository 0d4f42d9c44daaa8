"""Request-scoped dependencies: the session, ids and paging parameters."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from anyio import CancelScope
from fastapi import Depends, Path, Query, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import unit_of_work_options
from service.schemas import MAX_ID, Cursor

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# request.scope keys: the request's session once it has one, and whether it needs a transaction.
_SESSION = "service.session"
_TRANSACTION = "service.transaction"
_ONE_STATEMENT = "_service_one_statement"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def one_statement(endpoint: Endpoint) -> Endpoint:
    """Marks a write endpoint whose database work is one SQL statement.

    The statement then commits on its own, without BEGIN and COMMIT: two round trips fewer, and
    on SQLite the write lock is held for the statement alone. A statement is atomic by itself;
    an endpoint that writes twice must not be marked.
    """
    setattr(endpoint, _ONE_STATEMENT, True)
    return endpoint


class UnitOfWorkRoute(APIRoute):
    """A route whose request is one unit of work: a write is committed before the response.

    The route, not a generator dependency, owns the session: FastAPI's exit stacks and
    shielded context managers cost more per request than the query they wrap.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        write = not (self.methods or set()) <= _READ_METHODS
        # Reads run statement by statement (see unit_of_work_options), and so do marked writes.
        transaction = write and not getattr(self.endpoint, _ONE_STATEMENT, False)

        async def handle(request: Request) -> Response:
            request.scope[_SESSION] = None
            request.scope[_TRANSACTION] = transaction
            try:
                response = await handler(request)
                if write and (session := request.scope[_SESSION]) is not None:
                    await session.commit()
                return response
            finally:
                if (session := request.scope[_SESSION]) is not None:
                    # Returns the connection even when the request is being cancelled.
                    with CancelScope(shield=True):
                        await session.close()

        return handle


async def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use; see UnitOfWorkRoute."""
    if _SESSION not in request.scope:
        raise RuntimeError("SessionDep is only for routers with route_class=UnitOfWorkRoute")
    session: AsyncSession | None = request.scope[_SESSION]
    if session is None:
        sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
        session = request.scope[_SESSION] = sessionmaker()
        if options := unit_of_work_options(session.bind, transaction=request.scope[_TRANSACTION]):
            await session.connection(execution_options=options)
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
