"""items: fill public_id in batches, then index it concurrently

Revision ID: 64a7201fed1e
Revises: fcb7ce75300f
Create Date: 2026-12-05 10:10:00+00:00

Both steps run outside the migration's transaction (Alembic's autocommit_block), so neither
holds a lock for long: the backfill commits every 5,000 rows, and CREATE INDEX CONCURRENTLY
lets reads and writes go on while it builds. If either fails, running the migration again
is safe: the backfill skips rows that have a public_id, and an index left invalid by a failed
build is dropped and built again.

Rows that the previous release writes meanwhile get no public_id (it does not know the column);
the release after this one fills them before it makes the column NOT NULL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "64a7201fed1e"
down_revision: str | Sequence[str] | None = "fcb7ce75300f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One DO block, so `alembic upgrade --sql` shows the same batches it runs: each COMMIT ends a
# short transaction (allowed in a DO block run outside a transaction, as here). After each
# batch it pauses three times as long as the batch took: the backfill takes at most a quarter
# of a core from the traffic.
BACKFILL_POSTGRES = """
DO $$
DECLARE
    batch constant bigint := 5000;
    next_id bigint;
    last_id bigint;
    started timestamptz;
BEGIN
    SELECT min(id), max(id) INTO next_id, last_id FROM items;
    WHILE next_id <= last_id LOOP
        started := clock_timestamp();
        UPDATE items SET public_id = gen_random_uuid()
        WHERE id >= next_id AND id < next_id + batch AND public_id IS NULL;
        COMMIT;
        PERFORM pg_sleep(3 * extract(epoch FROM clock_timestamp() - started));
        next_id := next_id + batch;
    END LOOP;
END
$$
"""
# SQLite is a local file with one writer at a time: one statement. sa.Uuid is 32 hex digits there.
BACKFILL_SQLITE = "UPDATE items SET public_id = lower(hex(randomblob(16))) WHERE public_id IS NULL"


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    with op.get_context().autocommit_block():
        op.execute(BACKFILL_SQLITE if sqlite else BACKFILL_POSTGRES)
        if not sqlite:
            # One core builds the index; Postgres would otherwise take every core it may.
            op.execute("SET max_parallel_maintenance_workers = 0")
        op.drop_index(
            "ix_items_public_id", table_name="items", if_exists=True, postgresql_concurrently=True
        )
        op.create_index(
            "ix_items_public_id",
            "items",
            ["public_id"],
            unique=True,
            if_not_exists=True,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_items_public_id", table_name="items", postgresql_concurrently=True)
