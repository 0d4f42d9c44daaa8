"""How `alembic revision --autogenerate` writes a migration: Alembic's render_item and
process_revision_directives hooks (migrating.options() sets them), so that what it writes runs
on both databases unedited, and that it writes nothing when nothing changed."""

from collections.abc import Callable
from typing import Any, Literal

from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.operations import ops
from sqlalchemy import Column, DefaultClause, text
from sqlalchemy.sql.functions import FunctionElement

from service.models import Base, UTCDateTime


def render_item(type_: str, obj: Any, _autogen_context: AutogenContext) -> str | Literal[False]:
    """Write what autogenerate would write for one database only in a form both run."""
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


def revision_directives(config: Config) -> Callable[[Any, Any, list[Any]], None]:
    def process(_context: Any, _revision: Any, directives: list[Any]) -> None:
        script: ops.MigrationScript = directives[0]
        # `revision --autogenerate` with nothing to do writes no file (Alembic's cookbook).
        empty = all(upgrade_ops.is_empty() for upgrade_ops in script.upgrade_ops_list)
        if getattr(config.cmd_opts, "autogenerate", False) and empty:
            directives[:] = []
            print("No changes in schema detected; no migration written.")
            return
        for upgrade_ops in script.upgrade_ops_list:
            _version_counters_start_at_one(upgrade_ops)

    return process


def _version_counters_start_at_one(upgrade_ops: ops.UpgradeOps) -> None:
    """A version counter (models.Versioned) added to a table gets DEFAULT 1, as a NOT NULL
    column added to a table with rows needs. The model leaves the default out: with one,
    SQLAlchemy would read every new version back after each UPDATE."""
    counters = {
        (mapper.version_id_col.table.name, mapper.version_id_col.name)
        for mapper in Base.registry.mappers
        if isinstance(mapper.version_id_col, Column)
    }
    for table_ops in upgrade_ops.ops:
        if not isinstance(table_ops, ops.ModifyTableOps):
            continue
        for op in table_ops.ops:
            if isinstance(op, ops.AddColumnOp) and (op.table_name, op.column.name) in counters:
                column = op.column
                op.column = Column(
                    column.name, column.type, nullable=column.nullable, server_default=text("1")
                )
