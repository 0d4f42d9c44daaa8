"""Empty databases of each backend, the settings for one, and the app's sessions inside a
test's transaction."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import Session, SessionTransaction

from service.config import Settings, normalize_database_url
from service.db import ConnectionGate, Database, ReadSession, WriteSession
from tests.support import ROOT

ALEMBIC_INI = ROOT / "alembic.ini"


@dataclass(frozen=True)
class Backend:
    name: str
    server: URL | None  # the Postgres server to create databases in; None for SQLite


def asyncpg_args(url: URL) -> dict[str, Any]:
    return url.translate_connect_args(username="user")


@asynccontextmanager
async def empty_database(backend: Backend, tmp_path: Path) -> AsyncIterator[URL]:
    """A new, empty database of the given backend, dropped afterwards."""
    if backend.server is None:
        yield normalize_database_url(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
        return
    server = backend.server
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(**asyncpg_args(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def settings_for(url: URL, **overrides: Any) -> Settings:
    # Not the .env a developer may keep in the project: the test says every setting it needs.
    return Settings(
        _env_file=None,
        DATABASE_URL=url.render_as_string(hide_password=False),
        ALEMBIC_CONFIG=ALEMBIC_INI,
        **overrides,
    )


# SQLAlchemy's "Joining a Session into an External Transaction": a session's commit releases a
# SAVEPOINT, its rollback rolls back to one, and the test's own rollback undoes everything.
_IN_THE_TESTS_TRANSACTION: dict[str, Any] = {
    "expire_on_commit": False,
    "join_transaction_mode": "create_savepoint",
}


def session_on(connection: AsyncConnection) -> WriteSession:
    """A session in the test's transaction, for a test's own set-up."""
    return WriteSession(ReadSession(AsyncSession(connection, **_IN_THE_TESTS_TRANSACTION)))


class _ReadOnlySession(Session):
    """A read session of a test: its SAVEPOINT refuses writes, as the read engine's connections
    do (service/db.py), so a route that writes through a read session fails in the tests too."""


@event.listens_for(_ReadOnlySession, "after_begin")
def _refuse_writes(session: Session, _transaction: SessionTransaction, connection: Any) -> None:
    if connection.dialect.name == "postgresql":
        # Undone when the session rolls back to its SAVEPOINT, as it does when it closes.
        connection.exec_driver_sql("SET LOCAL transaction_read_only = on")
    else:
        connection.exec_driver_sql("PRAGMA query_only = ON")
        session.info["query_only"] = connection


@event.listens_for(_ReadOnlySession, "after_transaction_end")
def _accept_writes_again(session: Session, transaction: SessionTransaction) -> None:
    # SQLite's PRAGMA outlasts the SAVEPOINT: the test's own writes come next.
    if transaction.parent is None and "query_only" in session.info:
        session.info.pop("query_only").exec_driver_sql("PRAGMA query_only = OFF")


def database_in(connection: AsyncConnection, engine: AsyncEngine) -> Database:
    """The app's Database with every request's session in the test's transaction: what
    service.api.deps gives a route is then what the test can see and roll back. `engine` is
    for what works outside a request (the health check, the pool's metrics)."""
    gate = ConnectionGate(1, timeout=10)  # one connection: one session at a time
    return Database(
        engine=engine,
        read_engine=engine,
        sessions=async_sessionmaker(connection, **_IN_THE_TESTS_TRANSACTION),
        read_sessions=async_sessionmaker(
            connection, sync_session_class=_ReadOnlySession, **_IN_THE_TESTS_TRANSACTION
        ),
        gate=gate,
        read_gate=gate,
    )
