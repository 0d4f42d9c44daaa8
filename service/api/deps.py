"""Request-scoped dependencies: the session, ids and paging parameters."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from anyio import CancelScope
from fastapi import Depends, Path, Query, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import unit_of_work_options
from service.schemas import MAX_ID, Cursor

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


_SESSION = "service.session"  # request.scope key: the request's session, once it has one


class UnitOfWorkRoute(APIRoute):
    """A route whose request is one unit of work: a write is committed before the response.

    The route, not a generator dependency, owns the session: FastAPI's exit stacks and
    shielded context managers cost more per request than the query they wrap.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        write = not (self.methods or set()) <= _READ_METHODS

        async def handle(request: Request) -> Response:
            request.scope[_SESSION] = None
            try:
                response = await handler(request)
                # A read has nothing to commit: it ran without a transaction.
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
        write = request.method not in _READ_METHODS
        if options := unit_of_work_options(session.bind, write=write):
            await session.connection(execution_options=options)
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
