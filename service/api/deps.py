"""Request-scoped dependencies: the session, and objects loaded from path ids (or 404)."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import items, users
from service.db import unit_of_work_options
from service.models import Item, User
from service.schemas import MAX_ID, Cursor

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; a write is committed before the response is sent."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    write = request.method not in _READ_METHODS
    session = sessionmaker()
    try:
        if options := unit_of_work_options(session.bind, write=write):
            await session.connection(execution_options=options)
        yield session
        # A read has nothing to commit: it ran without a transaction (see unit_of_work_options).
        if write:
            await session.commit()
    finally:
        # Not `async with`: its exit closes in a task of its own, a loop turn later, holding the
        # connection that long; FastAPI already shields this teardown from cancellation.
        await session.close()


# scope="function": the commit runs before the response, so a failed commit is an error response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]


async def load_user(session: SessionDep, user_id: UserId) -> User:
    return await users.get_user(session, user_id)


async def load_item(session: SessionDep, item_id: ItemId) -> Item:
    return await items.get_item(session, item_id)


UserDep = Annotated[User, Depends(load_user)]
ItemDep = Annotated[Item, Depends(load_item)]
