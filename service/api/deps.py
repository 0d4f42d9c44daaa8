"""Request-scoped dependencies: the request's database work, ids and paging parameters.

Each request that touches the database gets one pooled connection in one transaction
(ConnectionDep), committed when the endpoint returns, before the response is sent, and rolled
back if anything raises. Reads run Core statements on it; writes go through an AsyncSession
joined to that same transaction (SessionDep).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service.db import ConnectionGate, DatabaseUnavailable
from service.schemas import MAX_ID, Cursor


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    gate: ConnectionGate = request.app.state.db_gate
    engine: AsyncEngine = request.app.state.engine
    connected = False
    try:
        async with gate, engine.connect() as connection, connection.begin():
            connected = True
            yield connection
    except OSError as exc:
        if connected:  # the endpoint's own error, not the database's
            raise
        # A refused or timed-out connect, which SQLAlchemy's async dialects pass on
        # unwrapped (https://github.com/sqlalchemy/sqlalchemy/issues/11956).
        raise DatabaseUnavailable(type(exc).__name__) from exc


# scope="function": the commit runs when the endpoint returns, not after the response.
ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


async def get_session(connection: ConnectionDep) -> AsyncIterator[AsyncSession]:
    # rollback_only: the session flushes into the request's transaction and never commits
    # it; get_connection does.
    async with AsyncSession(
        connection, expire_on_commit=False, join_transaction_mode="rollback_only"
    ) as session:
        yield session
        await session.commit()  # flushes whatever is pending


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
CursorQuery = Annotated[Cursor | None, Query(description="The `next_cursor` of the previous page.")]
