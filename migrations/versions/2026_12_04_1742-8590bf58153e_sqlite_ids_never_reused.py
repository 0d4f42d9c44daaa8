"""sqlite ids never reused: every table AUTOINCREMENT on SQLite

Revision ID: 8590bf58153e
Revises: 30d8641f7582
Create Date: 2026-12-04 17:42:03.609829+00:00

Without AUTOINCREMENT, SQLite gives a new row the id of a deleted last row, so a link to a
deleted item could later lead to another one. Postgres never reuses an id: nothing to do there.
SQLite cannot alter a table's AUTOINCREMENT, so each table is recreated (batch mode), its rows
and ids kept; the migration connection has foreign keys off, so no row cascades meanwhile.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8590bf58153e"
down_revision: str | Sequence[str] | None = "30d8641f7582"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "items", "access_tokens", "login_failures")


def _recreate(autoincrement: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _recreate(autoincrement=True)


def downgrade() -> None:
    _recreate(autoincrement=False)
