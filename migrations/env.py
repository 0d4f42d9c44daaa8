"""Alembic's async environment: the URL from service.config, the metadata of all models."""

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, DefaultClause, Inspector, Table, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.functions import FunctionElement

from service import models  # noqa: F401 - registers every table on Base.metadata
from service.config import ConfigError, Settings, load_settings
from service.db import Base, UTCDateTime, create_migration_engine, unavailable_reason

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("alembic.env")

target_metadata = Base.metadata

# Any fixed number works; every migration run on one database takes the same lock.
MIGRATION_LOCK_ID = 0x5EB71CE
# A run that timed out waiting for a table's lock is tried again this many times.
LOCK_RETRIES = 3
LOCK_NOT_AVAILABLE = "55P03"  # Postgres' SQLSTATE for an expired lock_timeout
LOCK_POLL_SECONDS = 0.5


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        # One line, not a traceback (a CommandError would be printed twice: logged and echoed).
        raise SystemExit(f"FAILED: {exc}") from None


def _lock_timeout(settings: Settings) -> str:
    return f"{int(settings.MIGRATION_LOCK_TIMEOUT * 1000)}ms"


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render what autogenerate would write for one database only in a form both run."""
    # Our TypeDecorator is a Python-side detail; the column is a plain timestamptz.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    # A server default such as func.now() is written as SQL the database at hand compiled it
    # to (`now()`, which SQLite lacks); as a function it compiles for each database anew.
    if (
        type_ == "server_default"
        and isinstance(obj, DefaultClause)
        and isinstance(obj.arg, FunctionElement)
        and not obj.arg.clauses.clauses
    ):
        return f"sa.func.{obj.arg.name}()"
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
        # Each migration commits with its version: the locks it took go at once, not after the
        # whole run, and a run that fails keeps the migrations before the one that failed.
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL instead of running it (`alembic upgrade head --sql`)."""
    settings = _settings()
    _configure(url=settings.database_url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    if context.get_context().dialect.name == "postgresql":
        # The script a DBA runs waits for table locks no longer than `alembic upgrade` does.
        context.execute(f"SET lock_timeout = '{_lock_timeout(settings)}'")
    with context.begin_transaction():
        context.run_migrations()


def _serialize(connection: Connection, settings: Settings, *, session: bool) -> None:
    """On Postgres: queue behind any other migration run, then bound every lock wait.

    Alembic has no lock of its own: concurrent upgrades queue on the advisory lock, and each
    then reads the version table afresh. Then a migration waits at most MIGRATION_LOCK_TIMEOUT
    for a table's lock: an ALTER queued behind a long transaction would make every query of
    that table queue behind it. It fails instead (and `alembic upgrade` tries again). With
    `session`, both outlast commits (autocommit_block() commits) and end with the connection.
    """
    # The advisory lock comes first: waiting for another run is expected and blocks no query.
    # It is tried, not waited for: pg_advisory_lock() would wait inside a statement, holding a
    # snapshot, and a CREATE INDEX CONCURRENTLY in the run that holds the lock waits for every
    # older snapshot to go: the two would deadlock.
    try_lock = text(f"SELECT pg_try_advisory{'' if session else '_xact'}_lock(:id)")
    for tries in itertools.count():
        if connection.scalar(try_lock, {"id": MIGRATION_LOCK_ID}):
            break
        if tries == 0:
            log.info("another migration run holds the migration lock; waiting for it to end")
        if session:
            connection.rollback()  # no transaction left open in between
        time.sleep(LOCK_POLL_SECONDS)
    for name, value in (("lock_timeout", _lock_timeout(settings)), ("application_name", "alembic")):
        connection.execute(
            text("SELECT set_config(:name, :value, :local)"),
            {"name": name, "value": value, "local": not session},
        )


def _has_autoincrement(connection: Connection, table: str) -> bool:
    sql = connection.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table},
    )
    return sql is not None and "AUTOINCREMENT" in sql.upper()


@contextmanager
def _sqlite_ids_kept(connection: Connection) -> Iterator[list[Callable[..., None]]]:
    """On SQLite, a table that batch mode recreates keeps AUTOINCREMENT and its counter.

    Batch mode builds the new table from the old one's reflection, and SQLAlchemy does not
    reflect AUTOINCREMENT (it does STRICT and WITHOUT ROWID: sqlalchemy/sqlalchemy#13543): the
    copy would give new rows the ids of deleted ones. Dropping the old table also drops its
    counter in sqlite_sequence, so each migration ends by putting the counters back. Yields
    what Alembic calls after each migration.
    """
    if connection.dialect.name != "sqlite":
        yield []
        return
    counters: dict[str, int] = {}

    def keep_autoincrement(_inspector: Inspector, table: Table, _column: Any) -> None:
        # Called for each column reflected; a migration's own table_kwargs still win.
        if table.dialect_options["sqlite"]["autoincrement"]:
            return
        if _has_autoincrement(connection, table.name):
            table.dialect_kwargs["sqlite_autoincrement"] = True
            counter = text("SELECT seq FROM sqlite_sequence WHERE name = :table")
            counters.setdefault(table.name, connection.scalar(counter, {"table": table.name}) or 0)

    def restore_counters(**_: Any) -> None:
        for table, seq in counters.items():
            if _has_autoincrement(connection, table):
                params = {"table": table, "seq": seq}
                connection.execute(
                    text(
                        "INSERT INTO sqlite_sequence (name, seq) SELECT :table, :seq"
                        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :table)"
                    ),
                    params,
                )
                connection.execute(
                    text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = :table"),
                    params,
                )
        counters.clear()

    event.listen(Table, "column_reflect", keep_autoincrement)
    try:
        yield [restore_counters]
    finally:
        event.remove(Table, "column_reflect", keep_autoincrement)


def do_run_migrations(connection: Connection) -> None:
    with _sqlite_ids_kept(connection) as after_each_migration:
        # Batch mode on every database, so that a migration written against either runs on
        # both: SQLite, which has little ALTER TABLE, recreates the table; Postgres gets ALTERs.
        _configure(
            connection=connection, render_as_batch=True, on_version_apply=after_each_migration
        )
        with context.begin_transaction():
            context.run_migrations()


def _migrate_own_connection(connection: Connection, settings: Settings) -> None:
    if connection.dialect.name == "postgresql":
        _serialize(connection, settings, session=True)
        connection.commit()
    do_run_migrations(connection)


async def _migrate_once(settings: Settings) -> None:
    engine = create_migration_engine(settings)
    threads = set(threading.enumerate())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate_own_connection, settings)
    finally:
        await engine.dispose()
        if engine.dialect.name == "sqlite":
            # When SQLite cannot open the file, aiosqlite's worker thread still has one result
            # to hand to this event loop: let it, before asyncio.run closes the loop, or the
            # thread dies printing a traceback ("Event loop is closed").
            for thread in set(threading.enumerate()) - threads:
                thread.join(timeout=5)


async def run_async_migrations() -> None:
    """Migrate; when a table's lock is not to be had, wait and try again.

    Between attempts the tables are left alone as long as the attempt waited, then twice, then
    four times as long, so that the transaction in the way can finish. Migrations that
    completed stay applied; the one that timed out was rolled back, and starts afresh.
    """
    settings = _settings()
    timeout = settings.MIGRATION_LOCK_TIMEOUT
    for attempt in range(LOCK_RETRIES + 1):
        try:
            await _migrate_once(settings)
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            if attempt == LOCK_RETRIES:
                raise SystemExit(
                    f"FAILED: lock timeout: a migration waited {timeout:g} s"
                    f" (MIGRATION_LOCK_TIMEOUT) for a table's lock, {attempt + 1} times. A"
                    " long transaction holds the table (see pg_stat_activity); run `alembic"
                    " upgrade head` again once it has ended. The database is at the last"
                    " migration that completed (`alembic current`)."
                ) from None
            pause = timeout * 2**attempt
            log.warning(
                "lock timeout: waited %g s for a table's lock; retrying in %g s (retry %d of %d)",
                timeout,
                pause,
                attempt + 1,
                LOCK_RETRIES,
            )
            await asyncio.sleep(pause)


def _migrate_handed_connection(connection: Connection) -> None:
    if connection.in_transaction():
        # In the caller's transaction (Alembic's cookbook): the lock and the timeout last as
        # long as it. Migrations that need autocommit_block() cannot run inside it.
        if connection.dialect.name == "postgresql":
            _serialize(connection, _settings(), session=False)
        do_run_migrations(connection)
    else:
        # No transaction begun (the tests): Alembic runs its own, as `alembic upgrade` does.
        _migrate_own_connection(connection, _settings())


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by code that runs Alembic's commands
        _migrate_handed_connection(connection)
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
