import logging
from pathlib import Path
from typing import Literal, NamedTuple

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from service.config import ConfigError
from service.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    revision: str


class NotReady(BaseModel):
    status: Literal["error"] = "error"
    detail: str


class Migrations(NamedTuple):
    head: str
    revisions: frozenset[str]  # every revision this code has


def migration_scripts(alembic_ini: str) -> Migrations:
    """The head and the revisions of the migration scripts, read once at start-up."""
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
    summary="The database is reachable and migrated to head",
    responses={503: {"model": NotReady, "description": "Database down or not migrated"}},
)
async def ready(request: Request) -> Ready | JSONResponse:
    migrations: Migrations = request.app.state.migrations
    head = migrations.head
    database: Database = request.app.state.database
    try:
        async with database.transaction() as connection:
            current = await connection.run_sync(_current_revisions)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        log.warning("health check: database unavailable (%s)", type(exc).__name__)
        return _not_ready("database unavailable")
    if len(current) == 1 and current[0] not in migrations.revisions:
        # A newer release has migrated: its migrations keep this code working (expand first,
        # contract one release later), so this replica serves on while it is replaced.
        return Ready(revision=current[0])
    if current != (head,):
        found = ", ".join(current) or "none"
        return _not_ready(
            f"database is at revision {found}, code expects {head}; run `alembic upgrade head`"
        )
    return Ready(revision=head)


def _not_ready(detail: str) -> JSONResponse:
    return JSONResponse(NotReady(detail=detail).model_dump(), status_code=503)
