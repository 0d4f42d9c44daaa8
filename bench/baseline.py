"""The benchmark's baseline: the users endpoints in FastAPI with raw driver SQL, no ORM.

Written as a careful user would write it with asyncpg (or aiosqlite) and nothing else: a driver
pool, each request on one connection, the bearer token checked with the same one indexed
lookup as the service, pydantic models from service.schemas for the same validation and JSON.
Serve it like the service:

    DATABASE_URL=... DB_POOL_SIZE=10 uvicorn bench.baseline:app
"""

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import aiosqlite
import asyncpg
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response, status

from service.config import load_settings
from service.paging import Cursor, Page, encode_cursor
from service.schemas import MAX_ID, ItemCreate, ItemRead, UserRead, UserUpdate

# Omitted PATCH fields come as NULL and keep their value (neither column may be null).
PG = {
    "caller": "SELECT users.id, users.email, users.name, users.created_at, users.updated_at"
    " FROM access_tokens JOIN users ON users.id = access_tokens.user_id"
    " WHERE access_tokens.token_hash = $1 AND access_tokens.expires_at > $2",
    "get": "SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1",
    "page": "SELECT id, email, name, created_at, updated_at FROM users"
    " WHERE id > $1 ORDER BY id LIMIT $2",
    "update": "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name),"
    " updated_at = now() WHERE id = $1 RETURNING id, email, name, created_at, updated_at",
    "item": "INSERT INTO items (owner_id, title, description) VALUES ($1, $2, $3)"
    " RETURNING id, owner_id, title, description, created_at, updated_at",
}
SQLITE = {
    "caller": "SELECT users.id, users.email, users.name, users.created_at, users.updated_at"
    " FROM access_tokens JOIN users ON users.id = access_tokens.user_id"
    " WHERE access_tokens.token_hash = ? AND access_tokens.expires_at > ?",
    "get": "SELECT id, email, name, created_at, updated_at FROM users WHERE id = ?",
    "page": "SELECT id, email, name, created_at, updated_at FROM users"
    " WHERE id > ? ORDER BY id LIMIT ?",
    "update": "UPDATE users SET email = COALESCE(?, email), name = COALESCE(?, name),"
    " updated_at = ? WHERE id = ? RETURNING id, email, name, created_at, updated_at",
    "item": "INSERT INTO items (owner_id, title, description, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?) RETURNING id, owner_id, title, description, created_at, updated_at",
}


class Duplicate(Exception):
    """A unique constraint refused the write."""


class Db(Protocol):
    """One connection, for the whole of a request."""

    async def caller(self, token_hash: str) -> Mapping[str, Any] | None: ...
    async def get(self, user_id: int) -> Mapping[str, Any] | None: ...
    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]: ...
    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None: ...
    async def create_item(self, owner_id: int, data: ItemCreate) -> Mapping[str, Any]: ...


class PostgresDb:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def caller(self, token_hash: str) -> Mapping[str, Any] | None:
        row = await self.conn.fetchrow(PG["caller"], token_hash, datetime.now(UTC))
        return None if row is None else dict(row)

    async def get(self, user_id: int) -> Mapping[str, Any] | None:
        row = await self.conn.fetchrow(PG["get"], user_id)
        return None if row is None else dict(row)

    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]:
        return [dict(row) for row in await self.conn.fetch(PG["page"], after, limit)]

    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None:
        try:
            row = await self.conn.fetchrow(
                PG["update"], user_id, changes.get("email"), changes.get("name")
            )
        except asyncpg.UniqueViolationError:
            raise Duplicate from None
        return None if row is None else dict(row)

    async def create_item(self, owner_id: int, data: ItemCreate) -> Mapping[str, Any]:
        return dict(await self.conn.fetchrow(PG["item"], owner_id, data.title, data.description))


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int, server_settings: dict[str, str]) -> "PostgresStore":
        pool = await asyncpg.create_pool(
            dsn, min_size=size, max_size=size, server_settings=server_settings
        )
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Db]:
        async with self.pool.acquire() as conn:
            yield PostgresDb(conn)

    async def close(self) -> None:
        await self.pool.close()


class SqliteDb:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def _one(self, sql: str, params: Sequence[Any]) -> Mapping[str, Any] | None:
        async with self.conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _sqlite_row(row)

    async def caller(self, token_hash: str) -> Mapping[str, Any] | None:
        return await self._one(SQLITE["caller"], (token_hash, _sqlite_now()))

    async def get(self, user_id: int) -> Mapping[str, Any] | None:
        return await self._one(SQLITE["get"], (user_id,))

    async def page(self, after: int, limit: int) -> list[Mapping[str, Any]]:
        rows = await self.conn.execute_fetchall(SQLITE["page"], (after, limit))
        return [_sqlite_row(row) for row in rows]

    async def update(self, user_id: int, changes: dict[str, Any]) -> Mapping[str, Any] | None:
        params = (changes.get("email"), changes.get("name"), _sqlite_now(), user_id)
        try:
            return await self._one(SQLITE["update"], params)
        except sqlite3.IntegrityError:
            raise Duplicate from None

    async def create_item(self, owner_id: int, data: ItemCreate) -> Mapping[str, Any]:
        now = _sqlite_now()
        row = await self._one(SQLITE["item"], (owner_id, data.title, data.description, now, now))
        assert row is not None
        return row


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

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Db]:
        conn = await self.idle.get()
        try:
            yield SqliteDb(conn)
        finally:
            self.idle.put_nowait(conn)

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


async def open_store() -> PostgresStore | SqliteStore:
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
NOT_SIGNED_IN = HTTPException(
    401, "invalid or expired token", headers={"WWW-Authenticate": "Bearer"}
)


@asynccontextmanager
async def _signed_in(request: Request) -> AsyncIterator[tuple[Db, Mapping[str, Any]]]:
    """The request's connection and its caller, from the bearer token: one indexed lookup."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NOT_SIGNED_IN
    store: PostgresStore | SqliteStore = request.app.state.store
    async with store.connection() as db:
        caller = await db.caller(hashlib.sha256(token.encode()).hexdigest())
        if caller is None:
            raise NOT_SIGNED_IN
        yield db, caller


def _not_found(user_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")


@app.get("/users")
async def list_users(
    request: Request, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    async with _signed_in(request) as (db, _caller):
        rows = await db.page(cursor or 0, limit + 1)
    more = len(rows) > limit
    return Page[UserRead](
        items=[UserRead.model_validate(row) for row in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1]["id"]) if more else None,
    )


@app.get("/users/{user_id}")
async def get_user(user_id: UserId, request: Request) -> UserRead:
    async with _signed_in(request) as (db, _caller):
        row = await db.get(user_id)
    if row is None:
        raise _not_found(user_id)
    return UserRead.model_validate(row)


@app.patch("/users/{user_id}")
async def update_user(user_id: UserId, data: UserUpdate, request: Request) -> UserRead:
    async with _signed_in(request) as (db, caller):
        if caller["id"] != user_id:
            raise HTTPException(403, "you can only change your own account")
        try:
            row = await db.update(user_id, data.model_dump(exclude_unset=True))
        except Duplicate:
            raise HTTPException(409, "a user with that email already exists") from None
    if row is None:
        raise _not_found(user_id)
    return UserRead.model_validate(row)


@app.post("/users/{user_id}/items", status_code=status.HTTP_201_CREATED)
async def create_item(
    user_id: UserId, data: ItemCreate, request: Request, response: Response
) -> ItemRead:
    async with _signed_in(request) as (db, caller):
        if caller["id"] != user_id:
            raise HTTPException(403, "you can only add items of your own")
        row = await db.create_item(user_id, data)
    response.headers["Location"] = f"/items/{row['id']}"
    return ItemRead.model_validate(row)
