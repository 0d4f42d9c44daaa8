"""items: public_id, a UUID to show outside (expand: nullable, no default)

Revision ID: fcb7ce75300f
Revises: 8590bf58153e
Create Date: 2026-12-05 10:00:00+00:00

Adding a nullable column without a default only changes the catalog: the ACCESS EXCLUSIVE lock
it takes lasts milliseconds (and waits at most MIGRATION_LOCK_TIMEOUT). `NOT NULL DEFAULT
gen_random_uuid()` would rewrite every row under that lock. The rows are filled by the next
migration, in batches; NOT NULL comes one release later (contract), once every row has one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fcb7ce75300f"
down_revision: str | Sequence[str] | None = "8590bf58153e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("public_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "public_id")
