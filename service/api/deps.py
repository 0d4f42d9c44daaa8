"""Request-scoped dependencies: the request's database session, the caller, ids and paging.

A route states in its signature whether it writes. `SessionDep` is the session of a route that
writes: one transaction, committed when the endpoint returns, before the response is sent, and
rolled back if anything raises. `ReadSessionDep` is the session of a route that only reads: its
engine refuses writes, and runs each statement in autocommit. A request has one of them and
nothing else: the token check runs in it too (`CurrentUser` in a SessionDep, `CurrentReader` in
a ReadSessionDep).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer

from service import auth
from service.db import Database, ReadSession, WriteSession
from service.errors import NotAuthenticated
from service.models import User
from service.paging import Cursor
from service.schemas import MAX_ID


async def get_session(request: Request) -> AsyncIterator[WriteSession]:
    database: Database = request.app.state.database
    # Waits its turn at the gate, in arrival order: 503 after DB_POOL_TIMEOUT (service/db.py).
    async with database.gate:
        session = database.sessions()
        try:
            yield WriteSession(ReadSession(session))
            await session.commit()
        finally:
            # Not `async with`: FastAPI already shields the exit of this dependency from
            # cancellation, which AsyncSession's own exit would pay for again.
            await session.close()


async def get_read_session(request: Request) -> AsyncIterator[ReadSession]:
    database: Database = request.app.state.database
    async with database.read_gate:
        session = database.read_sessions()
        try:
            yield ReadSession(session)
        finally:
            await session.close()  # nothing to commit: every statement did


# scope="function": the session ends when the endpoint returns, not after the response is sent.
SessionDep = Annotated[WriteSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[ReadSession, Depends(get_read_session, scope="function")]

# Reads "Authorization: Bearer <token>"; without one, 401 "Not authenticated". tokenUrl is
# where /docs' Authorize button logs in.
bearer = OAuth2PasswordBearer(tokenUrl="/auth/token")
BearerToken = Annotated[str, Depends(bearer)]


async def _caller(session: ReadSession, token: str, *, writes: bool) -> User:
    user = None
    if auth.well_formed(token):
        user = await auth.user_for_token(session, token, writes=writes)
    if user is None:
        raise NotAuthenticated("invalid or expired token")
    return user


async def current_user(token: BearerToken, session: SessionDep) -> User:
    """The caller of a route that writes: the user whose token this is, if it is known,
    unexpired and not revoked. Listed first, so a bad token is a 401 before any other check.
    Its row stays locked until the request commits (service/auth.py says why)."""
    return await _caller(session, token, writes=True)


async def current_reader(token: BearerToken, session: ReadSessionDep) -> User:
    """The caller of a route that only reads, checked as current_user checks it."""
    return await _caller(session, token, writes=False)


CurrentUser = Annotated[User, Depends(current_user)]
CurrentReader = Annotated[User, Depends(current_reader)]


async def password_turn() -> AsyncIterator[None]:
    """For routes that hash a password: listed before their session, see auth.PASSWORD_REQUESTS."""
    async with auth.PASSWORD_REQUESTS:
        yield


async def new_password_hash(request: Request) -> str | None:
    """The Argon2 hash of the password a route's JSON body sends (None if it sends no valid
    one). Listed before the route's session: the request hashes in its turn, holding no
    database connection, nor SQLite's one write turn, while it waits and hashes. FastAPI has
    parsed the body before it solves dependencies; request.json() returns what it parsed."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON: the route answers 4xx, hashes nothing
        return None
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(password, str) or not auth.valid_password(password):
        return None  # none, or one the route's validation refuses (422)
    async with auth.PASSWORD_REQUESTS:
        return await auth.hash_password(password)


NewPasswordHash = Annotated[str | None, Depends(new_password_hash)]


UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
