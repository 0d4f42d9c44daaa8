"""The benchmark's middle rung: the users endpoints in FastAPI with SQLAlchemy Core, no more.

Between bench/baseline.py (the raw driver) and the service: the service's engine, tables and
statements, run on an AsyncConnection opened in each endpoint (reads without BEGIN ... COMMIT,
writes in engine.begin()), with no dependency, gate or session. What it costs over the baseline
is SQLAlchemy's execution layer; what the service costs over it is our own plumbing.

    DATABASE_URL=... DB_POOL_SIZE=10 uvicorn bench.core:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response, status
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import load_settings
from service.db import create_engine
from service.models import users
from service.schemas import MAX_ID, Cursor, Page, UserCreate, UserRead, UserUpdate, encode_cursor

INSERT = insert(users).returning(*users.c)
BY_ID = select(users).where(users.c.id == bindparam("user_id"))
PAGE = (
    select(users)
    .where(users.c.id > bindparam("after"))
    .order_by(users.c.id)
    .limit(bindparam("limit"))
)
UPDATE = update(users).where(users.c.id == bindparam("user_id")).returning(*users.c)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = create_engine(load_settings())
    try:
        yield
    finally:
        await app.state.engine.dispose()


app = FastAPI(title="core", lifespan=lifespan)

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
CursorQuery = Annotated[Cursor | None, Query()]


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, request: Request, response: Response) -> UserRead:
    try:
        async with _engine(request).begin() as connection:
            row = (await connection.execute(INSERT, data.model_dump())).one()
    except IntegrityError:
        raise HTTPException(409, f"a user with email {data.email!r} already exists") from None
    response.headers["Location"] = f"/users/{row.id}"
    return UserRead.model_validate(row)


@app.get("/users")
async def list_users(
    request: Request, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    async with _engine(request).connect() as connection:
        params = {"after": cursor or 0, "limit": limit + 1}
        rows = (await connection.execute(PAGE, params)).all()
    more = len(rows) > limit
    return Page[UserRead](
        items=[UserRead.model_validate(row) for row in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1].id) if more else None,
    )


@app.get("/users/{user_id}")
async def get_user(user_id: UserId, request: Request) -> UserRead:
    async with _engine(request).connect() as connection:
        row = (await connection.execute(BY_ID, {"user_id": user_id})).one_or_none()
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    return UserRead.model_validate(row)


@app.patch("/users/{user_id}")
async def update_user(user_id: UserId, data: UserUpdate, request: Request) -> UserRead:
    changes = data.model_dump(exclude_unset=True)
    try:
        async with _engine(request).begin() as connection:
            statement = UPDATE if changes else BY_ID
            row = (await connection.execute(statement, {"user_id": user_id, **changes})).first()
    except IntegrityError:
        raise HTTPException(409, "a user with that email already exists") from None
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    return UserRead.model_validate(row)
