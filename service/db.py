"""Declarative base with a naming convention, the engine and session factories, the gate that
admits requests to the database in arrival order, keyset pagination, and what to say when the
database cannot serve."""

import asyncio
import socket
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, Executable, MetaData, event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

from service.config import Settings, masked

# Named constraints let Alembic drop and alter them by name, on SQLite (batch mode) too.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 5000


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them without an offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
    # Without AUTOINCREMENT, SQLite gives a new row the id of a deleted last one; Postgres
    # never reuses an id. A model with __table_args__ of its own adds them to these.
    __table_args__: Any = ({"sqlite_autoincrement": True},)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    options: dict[str, Any] = {
        # Statement parameters hold password hashes and token hashes: keep them out of the
        # SQL log (DB_ECHO, see service/observability.py) and out of error messages.
        "hide_parameters": True,
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT,
    }
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **options)
        _sqlite_hooks(engine, _SQLITE_APP_PRAGMAS)
        event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
        return engine
    server_settings = {"application_name": "service"}
    if settings.DB_STATEMENT_TIMEOUT:
        server_settings["statement_timeout"] = str(int(settings.DB_STATEMENT_TIMEOUT * 1000))
    engine = create_async_engine(
        url,
        **options,
        connect_args={"timeout": settings.DB_CONNECT_TIMEOUT, "server_settings": server_settings},
    )
    # Instead of pool_pre_ping, which costs BEGIN; SELECT; ROLLBACK on every checkout.
    event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    return engine


def _connect_or_unavailable(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any
) -> Any:
    # SQLAlchemy's async dialects pass a failed connect on as the driver raised it, a bare
    # OSError or asyncpg error (https://github.com/sqlalchemy/sqlalchemy/issues/11956), which
    # could come from anywhere. Wherever a connection is opened, its failure is this one.
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise DatabaseUnavailable(type(exc).__name__) from exc


def _replace_closed_connection(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    # A database restart or a terminated backend closes the socket, and asyncpg marks the
    # connection closed as soon as the event loop sees that: replace it before a request uses
    # it. A peer that vanished silently fails one statement instead, and that disconnect
    # makes the pool drop every connection older than it, as it would after a failed ping.
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def create_migration_engine(settings: Settings) -> AsyncEngine:
    """A pool-less engine for Alembic (one connection, closed when the run ends)."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, poolclass=NullPool)
        # Foreign keys stay off: batch mode recreates tables, and dropping the old copy of a
        # referenced table with them on would cascade-delete the referencing rows.
        _sqlite_hooks(engine, (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",))
        return engine
    return create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": settings.DB_CONNECT_TIMEOUT}
    )


class DatabaseUnavailable(Exception):
    """The database cannot be reached (the API answers 503)."""


class DatabaseBusy(DatabaseUnavailable):
    """No connection became free within DB_POOL_TIMEOUT."""


class ConnectionGate:
    """Admits requests to the database one per pooled connection, in the order they arrive.

    SQLAlchemy's async pool does not serve waiting requests in order (sqlalchemy#7679): a
    request arriving as a connection is returned takes it ahead of the woken waiter, which
    queues again, so under load a few requests wait many turns. asyncio.Semaphore is first in,
    first out and hands a released slot to the oldest waiter; sized to the pool, it leaves the
    pool nobody to make wait. `async with gate:` waits at most `timeout` seconds.
    """

    def __init__(self, slots: int, timeout: float) -> None:
        self.slots = slots
        self.timeout = timeout
        self.waiting = 0  # requests in line now, for the metrics
        self._free = asyncio.Semaphore(slots)

    async def __aenter__(self) -> None:
        if not self._free.locked():  # a free slot and nobody in line: no timer needed
            await self._free.acquire()
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self._free.acquire()
        except TimeoutError:
            raise DatabaseBusy(f"no database connection free within {self.timeout:g} s") from None
        finally:
            self.waiting -= 1

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._free.release()


class Database:
    """The engine, its sessions and the gate in front of them: what a request's session comes from.

    Requests reach the database only through `service.api.deps.get_session`. Code outside a
    request (the health check, the tests' set-up) may use `engine` directly.
    """

    def __init__(self, engine: AsyncEngine, gate: ConnectionGate) -> None:
        self.engine = engine
        self.gate = gate
        # expire_on_commit=False: what a request wrote can still be read, without a query,
        # after the commit that precedes its response.
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)


async def keyset_page(
    session: AsyncSession,
    statement: Executable,
    params: dict[str, Any],
    *,
    after: int | None,
    limit: int,
) -> tuple[list[Any], int | None]:
    """One page of `statement`, and the id to continue after (None on the last page).

    The statement filters `id > :after`, orders by id and takes `:limit` rows: keyset
    pagination, no OFFSET. One row more than the page tells whether another page follows.
    """
    # Ids start at 1: "after 0" is the first page.
    params = params | {"after": after or 0, "limit": limit + 1}
    rows = list((await session.execute(statement, params)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def violated(exc: IntegrityError, constraint: str, *, sqlite: str) -> bool:
    """Whether a write failed on `constraint`, a name from the naming convention. Postgres
    names it; SQLite names a unique constraint by its column (`sqlite="users.email"`) and a
    foreign key not at all (`sqlite="FOREIGN KEY constraint failed"`)."""
    message = str(exc.orig)
    return constraint in message or sqlite in message


# Postgres SQLSTATE classes that mean "the database cannot serve us now", not a bug: connection
# exception (08), login refused (28), database missing (3D), insufficient resources (53),
# operator intervention such as a statement timeout or a shutdown (57).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "28", "3D", "53", "57")
# SQLite's equivalents: locked past busy_timeout, the file cannot be opened, read or written,
# or is not a database.
_UNAVAILABLE_SQLITE_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_NOTADB",
)


def unavailable_reason(exc: BaseException, url: URL) -> str | None:
    """Why the database at `url` cannot serve, in one line ending with the URL (no password),
    or None when `exc` is not the database being unreachable, down or busy (a bug, then).

    The words are the server's or the driver's own where they are clear (`role "x" does not
    exist`, `unable to open database file`; they hold names, never passwords or parameters),
    ours for errors of the network, which the drivers pass on bare.
    """
    reason = None
    cause: BaseException | None = exc
    while reason is None and cause is not None:
        reason = _reason(cause)
        cause = cause.orig if isinstance(cause, DBAPIError) else cause.__cause__
    if reason is None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        reason = "connection lost"
    if reason is None and isinstance(exc, DatabaseUnavailable):
        reason = str(exc)
    return None if reason is None else f"{reason} ({masked(url)})"


def _reason(exc: BaseException) -> str | None:
    sqlstate = getattr(exc, "sqlstate", None)
    sqlite_error = getattr(exc, "sqlite_errorname", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES):
        return str(exc)
    if isinstance(sqlite_error, str) and sqlite_error.startswith(_UNAVAILABLE_SQLITE_ERRORS):
        return str(exc)
    if isinstance(exc, DatabaseBusy):
        return str(exc)
    if isinstance(exc, PoolTimeoutError):
        return "no pooled connection free within DB_POOL_TIMEOUT"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or exc}"
    return None


_SQLITE_APP_PRAGMAS = (
    "foreign_keys=ON",
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue.
    "journal_mode=WAL",
    "synchronous=NORMAL",
    f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)


def _sqlite_hooks(engine: AsyncEngine, pragmas: tuple[str, ...]) -> None:
    # SQLAlchemy's documented recipe for SQLite transactions: the driver sends no BEGIN of its
    # own, SQLAlchemy sends it. That makes SAVEPOINT and transactional DDL work.
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Every transaction takes SQLite's one write lock up front, so a request that reads and
    # then writes queues on busy_timeout at BEGIN, instead of failing with "database is
    # locked" when its read lock cannot be upgraded.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
