"""When the database cannot serve: the errors that say so, and the one line that names why."""

import socket

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.config import masked


class DatabaseUnavailable(Exception):
    """The database cannot be reached (the API answers 503)."""


class DatabaseBusy(DatabaseUnavailable):
    """No connection became free within DB_POOL_TIMEOUT."""


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
