"""Alembic's async environment: the URL from service.config, the metadata of all models."""

import asyncio
import threading
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, text

from service import models  # noqa: F401 - registers every table on Base.metadata
from service.config import ConfigError, Settings, load_settings
from service.db import Base, UTCDateTime, create_migration_engine, unavailable_reason

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Any fixed number works; every migration run on one database takes the same lock.
MIGRATION_LOCK_ID = 0x5EB71CE


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        # One line, not a traceback (a CommandError would be printed twice: logged and echoed).
        raise SystemExit(f"FAILED: {exc}") from None


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Our TypeDecorator is a Python-side detail; the column is a plain timestamptz.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _skip_empty_revision(_context: Any, _revision: Any, directives: list[Any]) -> None:
    # `revision --autogenerate` with nothing to do writes no file (Alembic's cookbook).
    autogenerate = getattr(config.cmd_opts, "autogenerate", False)
    if autogenerate and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        print("No changes in schema detected; no migration written.")


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        process_revision_directives=_skip_empty_revision,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL instead of running it (`alembic upgrade head --sql`)."""
    _configure(
        url=_settings().database_url, literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # Batch mode lets SQLite, which has little ALTER TABLE, recreate a table instead.
    _configure(connection=connection, render_as_batch=sqlite)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Alembic has no lock of its own: concurrent upgrades queue here, and each then
            # reads the version table afresh. Released when the transaction ends.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            # Then a migration waits at most this long for a table's lock: an ALTER queued
            # behind a long transaction would make every query of that table queue behind it.
            # It fails instead, leaving the database as it was, to be run again later.
            timeout_ms = int(_settings().MIGRATION_LOCK_TIMEOUT * 1000)
            connection.execute(
                text("SELECT set_config('lock_timeout', :timeout, true)"),
                {"timeout": f"{timeout_ms}ms"},
            )
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_migration_engine(_settings())
    threads = set(threading.enumerate())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()
        if engine.dialect.name == "sqlite":
            # When SQLite cannot open the file, aiosqlite's worker thread still has one result
            # to hand to this event loop: let it, before asyncio.run closes the loop, or the
            # thread dies printing a traceback ("Event loop is closed").
            for thread in set(threading.enumerate()) - threads:
                thread.join(timeout=5)


def run_migrations_online() -> None:
    # Tests (and other code) may pass an open connection, as in Alembic's cookbook.
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    try:
        asyncio.run(run_async_migrations())
    except Exception as exc:
        reason = unavailable_reason(exc, _settings().database_url)
        if reason is None:
            raise  # a bug in a migration: its traceback is what helps
        # One line naming the cause, instead of a traceback through asyncpg or aiosqlite.
        raise SystemExit(f"FAILED: database unavailable: {reason}") from None


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
