"""Where a request's session comes from: two engines (one for writes, one that only reads), their
sessionmakers, and the gate that admits requests to them in arrival order."""

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NewType

from sqlalchemy import Dialect, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from service.config import Settings
from service.outages import DatabaseBusy, DatabaseUnavailable

# The two kinds of session, told apart by the type checker as polar types its read sessions. A
# WriteSession may go where a ReadSession is asked for, not the other way round.
ReadSession = NewType("ReadSession", AsyncSession)
WriteSession = NewType("WriteSession", ReadSession)

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_PRAGMAS = (
    "foreign_keys=ON",
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue.
    "journal_mode=WAL",
    "synchronous=NORMAL",
    f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)


def create_engine(settings: Settings, *, read_only: bool = False) -> AsyncEngine:
    """The service's engine for DATABASE_URL; with `read_only`, one whose connections refuse
    every write (the database itself says no) and run each statement in autocommit: no BEGIN
    and COMMIT, two round trips fewer a request."""
    url = settings.database_url
    options: dict[str, Any] = {
        # Statement parameters hold password hashes and token hashes: keep them out of the
        # SQL log (DB_ECHO, see service/logs.py) and out of error messages.
        "hide_parameters": True,
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT,
    }
    if read_only:
        options["isolation_level"] = "AUTOCOMMIT"
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **options)
        if read_only:
            sqlite_pragmas(engine, (*SQLITE_PRAGMAS, "query_only=ON"))
        else:
            sqlite_transactions(engine, SQLITE_PRAGMAS)
    else:
        server_settings = {"application_name": "service"}
        if settings.DB_STATEMENT_TIMEOUT:
            server_settings["statement_timeout"] = str(int(settings.DB_STATEMENT_TIMEOUT * 1000))
        if read_only:
            # A startup parameter: set when the connection opens, at no cost per request.
            server_settings["default_transaction_read_only"] = "on"
        connect_args = {"timeout": settings.DB_CONNECT_TIMEOUT, "server_settings": server_settings}
        engine = create_async_engine(url, **options, connect_args=connect_args)
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


def sqlite_pragmas(engine: AsyncEngine, pragmas: tuple[str, ...]) -> None:
    """These PRAGMAs on every new connection, whose driver sends no BEGIN of its own."""

    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)


def sqlite_transactions(engine: AsyncEngine, pragmas: tuple[str, ...]) -> None:
    """SQLAlchemy's documented recipe for SQLite transactions: the driver sends no BEGIN of its
    own, SQLAlchemy sends it, so SAVEPOINT and transactional DDL work."""
    sqlite_pragmas(engine, pragmas)
    event.listen(engine.sync_engine, "begin", _begin_immediate)


def _begin_immediate(conn: Connection) -> None:
    # Every transaction that may write takes SQLite's one write lock up front, so a request
    # that reads and then writes queues on busy_timeout at BEGIN, instead of failing with
    # "database is locked" when its read lock cannot be upgraded.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class ConnectionGate:
    """Admits requests to the database one per pooled connection, in the order they arrive.

    SQLAlchemy's async pool does not serve waiting requests in order (sqlalchemy#7679): a
    request arriving as a connection is returned takes it ahead of the woken waiter, which
    queues again, so under load a few requests wait many turns. asyncio.Semaphore is first in,
    first out and hands a released slot to the oldest waiter; sized to the pool, it leaves the
    pool nobody to make wait. `async with gate:` waits at most `timeout` seconds.
    """

    def __init__(self, slots: int, timeout: float) -> None:
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


@dataclass(frozen=True)
class Database:
    """The sessions of requests: `sessions` for the routes that write, `read_sessions` for those
    that only read, each behind its gate (service/api/deps.py). Code outside a request (the
    health check, start-up, the metrics) uses the engines directly."""

    engine: AsyncEngine
    read_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    gate: ConnectionGate
    read_gate: ConnectionGate

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.read_engine.dispose()


def open_database(settings: Settings) -> Database:
    engine = create_engine(settings)
    read_engine = create_engine(settings, read_only=True)
    slots = settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW
    gate = read_gate = ConnectionGate(slots, settings.DB_POOL_TIMEOUT)
    if engine.dialect.name == "sqlite":
        # Every writing transaction takes SQLite's one write lock (BEGIN IMMEDIATE): more than
        # one at a time would only move the queue into SQLite's busy handler, which sleeps and
        # polls, instead of this gate, which hands over at once and in order. Readers (WAL)
        # run beside the writer, on their own gate.
        gate = ConnectionGate(1, settings.DB_POOL_TIMEOUT)
    # expire_on_commit=False: what a request wrote can still be read, without a query, after
    # the commit that precedes its response.
    return Database(
        engine=engine,
        read_engine=read_engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        read_sessions=async_sessionmaker(read_engine, expire_on_commit=False),
        gate=gate,
        read_gate=read_gate,
    )
