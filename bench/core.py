"""The benchmark's middle rung: the users endpoints in FastAPI with SQLAlchemy Core, no more.

Between bench/baseline.py (the raw driver) and the service: the service's engine, tables and
statements, run on an AsyncConnection opened in each endpoint (the token checked on it first),
with no dependency, gate or session. What it costs over the baseline is SQLAlchemy's execution
layer; what the service costs over it is our own plumbing.

    DATABASE_URL=... DB_POOL_SIZE=10 uvicorn bench.core:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response, status
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The baseline's own parameters and 401, so that both rungs validate and answer alike.
from bench.baseline import NOT_SIGNED_IN, CursorQuery, Limit, UserId
from service import auth
from service.config import load_settings
from service.db import create_engine
from service.models import Base, now
from service.paging import Page, encode_cursor
from service.schemas import ItemCreate, ItemRead, UserRead, UserUpdate

users, items, tokens = (Base.metadata.tables[t] for t in ("users", "items", "access_tokens"))
USER_COLUMNS = (users.c.id, users.c.email, users.c.name, users.c.created_at, users.c.updated_at)
BY_TOKEN = (
    select(*USER_COLUMNS)
    .join(tokens, tokens.c.user_id == users.c.id)
    .where(tokens.c.token_hash == bindparam("token_hash"), tokens.c.expires_at > bindparam("now"))
)
BY_ID = select(*USER_COLUMNS).where(users.c.id == bindparam("user_id"))
PAGE = (
    select(*USER_COLUMNS)
    .where(users.c.id > bindparam("after"))
    .order_by(users.c.id)
    .limit(bindparam("limit"))
)
UPDATE = update(users).where(users.c.id == bindparam("user_id")).returning(*USER_COLUMNS)
INSERT_ITEM = insert(items).returning(*items.c)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = create_engine(load_settings())
    try:
        yield
    finally:
        await app.state.engine.dispose()


app = FastAPI(title="core", lifespan=lifespan)


@asynccontextmanager
async def _signed_in(request: Request) -> AsyncIterator[tuple[AsyncConnection, Any]]:
    """A connection in a transaction and its caller, from the bearer token (the service's
    query, as Core)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NOT_SIGNED_IN
    engine: AsyncEngine = request.app.state.engine
    async with engine.begin() as connection:
        params = {"token_hash": auth.token_hash(token), "now": now()}
        caller = (await connection.execute(BY_TOKEN, params)).one_or_none()
        if caller is None:
            raise NOT_SIGNED_IN
        yield connection, caller


@app.get("/users")
async def list_users(
    request: Request, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    async with _signed_in(request) as (connection, _caller):
        params = {"after": cursor or 0, "limit": limit + 1}
        rows = (await connection.execute(PAGE, params)).all()
    more = len(rows) > limit
    return Page[UserRead](
        items=[UserRead.model_validate(row) for row in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1].id) if more else None,
    )


@app.get("/users/{user_id}")
async def get_user(user_id: UserId, request: Request) -> UserRead:
    async with _signed_in(request) as (connection, _caller):
        row = (await connection.execute(BY_ID, {"user_id": user_id})).one_or_none()
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    return UserRead.model_validate(row)


@app.patch("/users/{user_id}")
async def update_user(user_id: UserId, data: UserUpdate, request: Request) -> UserRead:
    changes = data.model_dump(exclude_unset=True)
    try:
        async with _signed_in(request) as (connection, caller):
            if caller.id != user_id:
                raise HTTPException(403, "you can only change your own account")
            statement = UPDATE if changes else BY_ID
            row = (await connection.execute(statement, {"user_id": user_id, **changes})).first()
    except IntegrityError:
        raise HTTPException(409, "a user with that email already exists") from None
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    return UserRead.model_validate(row)


@app.post("/users/{user_id}/items", status_code=status.HTTP_201_CREATED)
async def create_item(
    user_id: UserId, data: ItemCreate, request: Request, response: Response
) -> ItemRead:
    async with _signed_in(request) as (connection, caller):
        if caller.id != user_id:
            raise HTTPException(403, "you can only add items of your own")
        params = {"owner_id": user_id, **data.model_dump()}
        row = (await connection.execute(INSERT_ITEM, params)).one()
    response.headers["Location"] = f"/items/{row.id}"
    return ItemRead.model_validate(row)
