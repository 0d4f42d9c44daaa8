"""What migrations/env.py calls beyond Alembic's async template: each function one extra.

- settings():            the database URL and timeouts, from the service's settings
- create_engine():       the engine a migration run uses
- options():             how migrations run, and autogenerate's hooks (service/autogenerate.py)
- wait_for_other_runs(): on Postgres, one run at a time, each lock wait bounded
- sqlite_ids_kept():     on SQLite, a table batch mode recreates keeps AUTOINCREMENT
- run():                 retries after a lock timeout; a failure to connect in one line
"""

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from alembic.config import Config
from sqlalchemy import Connection, Inspector, Table, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from service import autogenerate
from service.config import ConfigError, Settings, load_settings
from service.db import SQLITE_BUSY_TIMEOUT_MS, sqlite_transactions
from service.outages import unavailable_reason

log = logging.getLogger("alembic.env")

# Any fixed number works; every migration run on one database takes the same lock.
MIGRATION_LOCK_ID = 0x5EB71CE
# A run that timed out waiting for a table's lock is tried again this many times.
LOCK_RETRIES = 3
LOCK_NOT_AVAILABLE = "55P03"  # Postgres' SQLSTATE for an expired lock_timeout
LOCK_POLL_SECONDS = 0.5


def settings() -> Settings:
    """The service's settings; a bad one ends the run with one line, not a traceback."""
    try:
        return load_settings()
    except ConfigError as exc:
        # A CommandError would be printed twice: logged and echoed.
        raise SystemExit(f"FAILED: {exc}") from None


def create_engine(settings: Settings) -> AsyncEngine:
    """A pool-less engine: one connection, closed when the run ends."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, poolclass=NullPool)
        # Foreign keys stay off: batch mode recreates tables, and dropping the old copy of a
        # referenced table with them on would cascade-delete the referencing rows.
        sqlite_transactions(engine, (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",))
        return engine
    return create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": settings.DB_CONNECT_TIMEOUT}
    )


def options(config: Config) -> dict[str, Any]:
    """context.configure()'s options beyond the template's, online and offline."""
    return {
        "compare_type": True,
        "render_item": autogenerate.render_item,
        "process_revision_directives": autogenerate.revision_directives(config),
        # Batch mode on every database, so that a migration written against either runs on
        # both: SQLite, which has little ALTER TABLE, recreates the table; Postgres gets ALTERs.
        "render_as_batch": True,
        # Each migration commits with its version: the locks it took go at once, not after the
        # whole run, and a run that fails keeps the migrations before the one that failed.
        "transaction_per_migration": True,
    }


def lock_timeout(settings: Settings) -> str:
    """How long a migration waits for a table's lock on Postgres, as SQL's value."""
    return f"{int(settings.MIGRATION_LOCK_TIMEOUT * 1000)}ms"


def wait_for_other_runs(connection: Connection) -> None:
    """On Postgres: queue behind any other migration run, then bound every lock wait.

    Alembic has no lock of its own: concurrent upgrades queue on an advisory lock, and each
    then reads the version table afresh. A migration then waits at most MIGRATION_LOCK_TIMEOUT
    for a table's lock, since an ALTER queued behind a long transaction makes every query of
    that table queue behind it; it fails instead (and run() tries again). Both last as long as
    the caller's transaction (the cookbook's branch), else the session: they outlast the
    commits of each migration and of autocommit_block()."""
    if connection.dialect.name != "postgresql":
        return
    session = not connection.in_transaction()
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
    for name, value in (
        ("lock_timeout", lock_timeout(settings())),
        ("application_name", "alembic"),
    ):
        connection.execute(
            text("SELECT set_config(:name, :value, :local)"),
            {"name": name, "value": value, "local": not session},
        )
    if session:
        connection.commit()


def _has_autoincrement(connection: Connection, table: str) -> bool:
    sql = connection.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table},
    )
    return sql is not None and "AUTOINCREMENT" in sql.upper()


@contextmanager
def sqlite_ids_kept(connection: Connection) -> Iterator[Callable[..., None] | None]:
    """On SQLite, a table that batch mode recreates keeps AUTOINCREMENT and its counter.

    Batch mode builds the new table from the old one's reflection, and SQLAlchemy does not
    reflect AUTOINCREMENT (it does STRICT and WITHOUT ROWID: sqlalchemy/sqlalchemy#13543): the
    copy would give new rows the ids of deleted ones. Dropping the old table also drops its
    counter in sqlite_sequence, so each migration ends by putting the counters back. Yields
    what Alembic calls after each migration (its `on_version_apply`), if anything.
    """
    if connection.dialect.name != "sqlite":
        yield None
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
        yield restore_counters
    finally:
        event.remove(Table, "column_reflect", keep_autoincrement)


def run(migrate: Callable[[], Awaitable[None]]) -> None:
    """asyncio.run(migrate()), tried again while a table's lock is not to be had; a database
    that cannot be reached ends the run with one line naming the cause and the database.

    Between attempts the tables are left alone as long as the attempt waited, then twice, then
    four times as long, so that the transaction in the way can finish. Migrations that
    completed stay applied; the one that timed out was rolled back, and starts afresh.
    """
    timeout = settings().MIGRATION_LOCK_TIMEOUT
    for attempt in range(LOCK_RETRIES + 1):
        try:
            asyncio.run(_joining_new_threads(migrate))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                _fail_in_one_line(exc)
            if attempt == LOCK_RETRIES:
                raise SystemExit(
                    f"FAILED: lock timeout: a migration waited {timeout:g} s"
                    f" (MIGRATION_LOCK_TIMEOUT) for a table's lock, {attempt + 1} times. A"
                    " long transaction holds the table (see pg_stat_activity); run `alembic"
                    " upgrade head` again once it has ended. The database is at the last"
                    " migration that completed (`alembic current`)."
                ) from None
            pause = timeout * 2**attempt
            retry = f"retry {attempt + 1} of {LOCK_RETRIES}"
            waited = f"lock timeout: waited {timeout:g} s for a table's lock"
            log.warning("%s; retrying in %g s (%s)", waited, pause, retry)
            time.sleep(pause)
        except Exception as exc:
            _fail_in_one_line(exc)


def _fail_in_one_line(exc: Exception) -> NoReturn:
    reason = unavailable_reason(exc, settings().database_url)
    if reason is None:
        raise exc  # a bug in a migration: its traceback is what helps
    # Instead of a traceback through asyncpg or aiosqlite.
    raise SystemExit(f"FAILED: database unavailable: {reason}") from None


async def _joining_new_threads(migrate: Callable[[], Awaitable[None]]) -> None:
    threads = set(threading.enumerate())
    try:
        await migrate()
    finally:
        # When SQLite cannot open the file, aiosqlite's worker thread still has one result to
        # hand to this event loop: let it, before asyncio.run closes the loop, or the thread
        # dies printing a traceback ("Event loop is closed").
        for thread in set(threading.enumerate()) - threads:
            thread.join(timeout=5)
