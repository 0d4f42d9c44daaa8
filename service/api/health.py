import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from service.config import ConfigError
from service.db import Database
from service.outages import DatabaseUnavailable, unavailable_reason

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    revision: str  # the database's: the code's head, or a newer one (see ready)


class NotReady(BaseModel):
    status: Literal["error"] = "error"
    detail: str


@dataclass(frozen=True)
class Migrations:
    """What the code's migration scripts hold: their head, and every revision they know."""

    head: str
    known: frozenset[str]


def read_migrations(alembic_ini: str) -> Migrations:
    """The migration scripts, read once at start-up."""
    path = Path(alembic_ini)
    if not path.is_file():
        # An editable install run from elsewhere still finds the project's own alembic.ini.
        path = Path(__file__).resolve().parents[2] / "alembic.ini"
    if not path.is_file():
        raise ConfigError(
            f"ALEMBIC_CONFIG: {alembic_ini} not found; run from the project root or set it"
        )
    scripts = ScriptDirectory.from_config(Config(path))
    head = scripts.get_current_head()
    if head is None:
        raise ConfigError(f"ALEMBIC_CONFIG: {path} has no migrations")
    return Migrations(head, frozenset(script.revision for script in scripts.walk_revisions()))


@router.get("/live", summary="The process is up (no database access)")
async def live() -> Live:
    return Live()


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


@router.get(
    "",
    response_model=Ready,
    summary="The database is reachable and migrated to head (or past it)",
    responses={503: {"model": NotReady, "description": "Database down or not migrated"}},
)
async def ready(request: Request) -> Ready | JSONResponse:
    """Ready when the database is at the code's head, or at a revision the code does not know:
    a newer release migrated it, and its migrations keep this code working (expand now,
    contract one release later), as during a rolling deploy. `revision` is the database's.
    Not ready when it is behind: at an older revision, or none."""
    migrations: Migrations = request.app.state.migrations
    database: Database = request.app.state.database
    try:
        # Not a request's work: the read engine directly, behind the same gate.
        async with database.read_gate, database.read_engine.connect() as connection:
            current = await connection.run_sync(_current_revisions)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        reason = unavailable_reason(exc, database.read_engine.url) or type(exc).__name__
        log.warning("health check: database unavailable: %s", reason)
        return _not_ready("database unavailable")
    ahead = not migrations.known.issuperset(current)
    if current == (migrations.head,) or ahead:
        return Ready(revision=", ".join(current))
    found = ", ".join(current) or "none"
    return _not_ready(
        f"database is at revision {found}, code expects {migrations.head};"
        " run `alembic upgrade head`"
    )


def _not_ready(detail: str) -> JSONResponse:
    return JSONResponse(NotReady(detail=detail).model_dump(), status_code=503)
