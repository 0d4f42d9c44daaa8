"""The benchmark's baseline: the users endpoints in FastAPI with raw driver SQL, no ORM.

Written as a careful user would write it with asyncpg (or aiosqlite) and nothing else: a driver
pool, one statement per request, pydantic models from service.schemas for the same validation
and the same JSON. Serve it like the service:

    DATABASE_URL=... DB_POOL_SIZE=10 uvicorn bench.baseline:app
"""

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import aiosqlite
import asyncpg
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response, status

from service.config import load_settings
from service.schemas import MAX_ID, Cursor, Page, UserCreate, UserRead, UserUpdate, encode_cursor

# Omitted PATCH fields come as NULL and keep their value (neither column may be null).
PG = {
    "create": "INSERT INTO users (email, name) VALUES ($1, $2)"
    " RETURNING id, email, name, created_at, updated_at",
    "get": "SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1",
    "page": "SELECT id, email, name, created_at, updated_at FROM users"
    " WHERE id > $1 ORDER BY id LIMIT $2",
    "update": "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name),"
    " updated_at = now() WHERE id = $1 RETURNING id, email, name, created_at, updated_at",
}
SQLITE = {
    "create": "INSERT INTO users (email, name, created_at, updated_at) VALUES (?, ?, ?, ?)"
    " RETURNING id, email, name, created_at, updated_at",
    "get": "SELECT id, email, name, created_at, updated_at FROM users WHERE id = ?",
    "page": "SELECT id, email, name, created_at, updated_at FROM users"
    " WHERE id > ? ORDER BY id LIMIT ?",
    "update": "UPDATE users SET email = COALESCE(?, email), name = COALESCE(?, name),"
    " updated_at = ? WHERE id = ? RETURNING id, email, name, created_at, updated_at",
}


class Duplicate(Exception):
    """The email is taken."""


class Store(Protocol):
    async def create(self, email: str, name: str) -> Mapping[str, Any]: ...
    async def get(self, user_id: int) -> Mapping[str, Any] | None: ...
    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]: ...
    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None: ...
    async def close(self) -> None: ...


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int, server_settings: dict[str, str]) -> "PostgresStore":
        pool = await asyncpg.create_pool(
            dsn, min_size=size, max_size=size, server_settings=server_settings
        )
        return cls(pool)

    async def create(self, email: str, name: str) -> Mapping[str, Any]:
        try:
            row = await self.pool.fetchrow(PG["create"], email, name)
        except asyncpg.UniqueViolationError:
            raise Duplicate from None
        return dict(row)

    async def get(self, user_id: int) -> Mapping[str, Any] | None:
        row = await self.pool.fetchrow(PG["get"], user_id)
        return None if row is None else dict(row)

    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]:
        rows = await self.pool.fetch(PG["page"], after, limit)
        return [dict(row) for row in rows]

    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None:
        try:
            row = await self.pool.fetchrow(
                PG["update"], user_id, changes.get("email"), changes.get("name")
            )
        except asyncpg.UniqueViolationError:
            raise Duplicate from None
        return None if row is None else dict(row)

    async def close(self) -> None:
        await self.pool.close()


class SqliteStore:
    """aiosqlite has no pool: a queue of connections, each in autocommit (one statement each)."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self.connections = connections
        self.idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for conn in connections:
            self.idle.put_nowait(conn)

    @classmethod
    async def open(cls, path: str, size: int) -> "SqliteStore":
        connections = []
        for _ in range(size):
            conn = await aiosqlite.connect(path, isolation_level=None)
            conn.row_factory = aiosqlite.Row
            for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
                await conn.execute(f"PRAGMA {pragma}")
            await conn.execute("PRAGMA busy_timeout=5000")
            connections.append(conn)
        return cls(connections)

    async def _one(self, sql: str, *params: Any) -> Mapping[str, Any] | None:
        conn = await self.idle.get()
        try:
            async with conn.execute(sql, params) as cursor:
                row = await cursor.fetchone()
        finally:
            self.idle.put_nowait(conn)
        return None if row is None else _sqlite_row(row)

    async def create(self, email: str, name: str) -> Mapping[str, Any]:
        now = _sqlite_now()
        try:
            row = await self._one(SQLITE["create"], email, name, now, now)
        except sqlite3.IntegrityError:
            raise Duplicate from None
        assert row is not None
        return row

    async def get(self, user_id: int) -> Mapping[str, Any] | None:
        return await self._one(SQLITE["get"], user_id)

    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]:
        conn = await self.idle.get()
        try:
            rows = await conn.execute_fetchall(SQLITE["page"], (after, limit))
        finally:
            self.idle.put_nowait(conn)
        return [_sqlite_row(row) for row in rows]

    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None:
        try:
            return await self._one(
                SQLITE["update"], changes.get("email"), changes.get("name"), _sqlite_now(), user_id
            )
        except sqlite3.IntegrityError:
            raise Duplicate from None

    async def close(self) -> None:
        for conn in self.connections:
            await conn.close()


def _sqlite_now() -> str:
    # The layout SQLAlchemy uses for SQLite, so both apps read each other's rows alike.
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _sqlite_row(row: aiosqlite.Row) -> dict[str, Any]:
    data = dict(row)
    for key in ("created_at", "updated_at"):
        data[key] = datetime.fromisoformat(data[key]).replace(tzinfo=UTC)
    return data


async def open_store() -> Store:
    settings = load_settings()
    url = settings.database_url
    size = settings.DB_POOL_SIZE
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return await SqliteStore.open(url.database, size)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    server_settings = {"application_name": "baseline"}
    if settings.DB_STATEMENT_TIMEOUT:
        server_settings["statement_timeout"] = str(int(settings.DB_STATEMENT_TIMEOUT * 1000))
    return await PostgresStore.open(dsn, size, server_settings)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.store = await open_store()
    try:
        yield
    finally:
        await app.state.store.close()


app = FastAPI(title="baseline", lifespan=lifespan)

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
CursorQuery = Annotated[Cursor | None, Query()]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _not_found(user_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, request: Request, response: Response) -> UserRead:
    try:
        row = await _store(request).create(data.email, data.name)
    except Duplicate:
        raise HTTPException(409, f"a user with email {data.email!r} already exists") from None
    response.headers["Location"] = f"/users/{row['id']}"
    return UserRead.model_validate(row)


@app.get("/users")
async def list_users(
    request: Request, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    rows = await _store(request).page(cursor or 0, limit + 1)
    more = len(rows) > limit
    return Page[UserRead](
        items=[UserRead.model_validate(row) for row in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1]["id"]) if more else None,
    )


@app.get("/users/{user_id}")
async def get_user(user_id: UserId, request: Request) -> UserRead:
    row = await _store(request).get(user_id)
    if row is None:
        raise _not_found(user_id)
    return UserRead.model_validate(row)


@app.patch("/users/{user_id}")
async def update_user(user_id: UserId, data: UserUpdate, request: Request) -> UserRead:
    try:
        row = await _store(request).update(user_id, data.model_dump(exclude_unset=True))
    except Duplicate:
        raise HTTPException(409, "a user with that email already exists") from None
    if row is None:
        raise _not_found(user_id)
    return UserRead.model_validate(row)
