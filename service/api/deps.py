"""Request-scoped dependencies: the request's database work, the caller, ids and paging.

Each request that touches the database gets one pooled connection in one transaction
(ConnectionDep), committed when the endpoint returns, before the response is sent, and rolled
back if anything raises. Reads run Core statements on it; writes go through an AsyncSession
joined to that same transaction (SessionDep).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service import auth
from service.db import Database, session_on
from service.errors import NotAuthenticated
from service.schemas import MAX_ID, Cursor, UserRead


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_connection(database: DatabaseDep) -> AsyncIterator[AsyncConnection]:
    async with database.transaction() as connection:
        yield connection


# scope="function": the commit runs when the endpoint returns, not after the response.
ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


async def get_session(connection: ConnectionDep) -> AsyncIterator[AsyncSession]:
    async with session_on(connection) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# Reads "Authorization: Bearer <token>"; without one, 401 "Not authenticated". tokenUrl is
# where /docs' Authorize button logs in.
bearer = OAuth2PasswordBearer(tokenUrl="/auth/token")
BearerToken = Annotated[str, Depends(bearer)]


async def current_user(token: BearerToken, connection: ConnectionDep) -> UserRead:
    """The caller: the user whose token this is, if it is known, unexpired and not revoked.

    Every protected route depends on this first, so a bad token is a 401 before any other
    check; the lookup runs on the request's own connection.
    """
    user = await auth.user_for_token(connection, token) if auth.well_formed(token) else None
    if user is None:
        raise NotAuthenticated("invalid or expired token")
    return UserRead.model_validate(user)


CurrentUser = Annotated[UserRead, Depends(current_user)]

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
