"""Request-scoped dependencies: the request's database session, the caller, ids and paging.

A request reaches the database through one AsyncSession (SessionDep) and nothing else: the
token lookup, reads and writes run in its one transaction, which is committed when the endpoint
returns, before the response is sent, and rolled back if anything raises.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from service import auth
from service.db import Database
from service.errors import NotAuthenticated
from service.models import User
from service.schemas import MAX_ID, Cursor

READ_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    # Waits its turn at the gate, in arrival order: 503 after DB_POOL_TIMEOUT (service/db.py).
    async with database.gate:
        session = database.sessionmaker()
        try:
            autocommit = request.method in READ_METHODS and database.engine.name == "postgresql"
            if autocommit:
                # On Postgres a read runs in autocommit: no BEGIN and COMMIT, two round trips
                # fewer, and nothing to commit. Under READ COMMITTED each statement of a
                # transaction takes its own snapshot anyway. (On SQLite every transaction
                # takes the write lock up front, see service/db.py: reads keep theirs.)
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session
            if not autocommit:
                await session.commit()
        finally:
            # Not `async with`: FastAPI already shields the exit of this dependency from
            # cancellation, which AsyncSession's own exit would pay for again.
            await session.close()


# scope="function": the commit runs when the endpoint returns, not after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# Reads "Authorization: Bearer <token>"; without one, 401 "Not authenticated". tokenUrl is
# where /docs' Authorize button logs in.
bearer = OAuth2PasswordBearer(tokenUrl="/auth/token")
BearerToken = Annotated[str, Depends(bearer)]


async def current_user(token: BearerToken, session: SessionDep) -> User:
    """The caller: the user whose token this is, if it is known, unexpired and not revoked.

    Every protected route depends on this first, so a bad token is a 401 before any other
    check.
    """
    user = await auth.user_for_token(session, token) if auth.well_formed(token) else None
    if user is None:
        raise NotAuthenticated("invalid or expired token")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def password_turn() -> AsyncIterator[None]:
    """For routes that hash a password: listed before their session, see auth.PASSWORD_REQUESTS."""
    async with auth.PASSWORD_REQUESTS:
        yield


UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
