"""Alembic on a shared Postgres: concurrent upgrades, and a migration that fails half-way."""

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from tests.support import ROOT
from tests.support.accounts import sign_up
from tests.support.app import serve
from tests.support.databases import Backend, asyncpg_args, empty_database
from tests.support.migrations import Migration, alembic_cli, scripts_with

BROKEN = Migration(
    "0badc0ffee00",
    "a migration that fails half-way",
    upgrade=[
        'op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))',
        'op.add_column("users", sa.Column("nickname", sa.String(50)))',
        'op.execute("SELECT * FROM no_such_table")',
    ],
    downgrade=['op.drop_column("users", "nickname")', 'op.drop_table("half_done")'],
)


async def _fetch(url: URL, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**asyncpg_args(url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query)
        return rows
    finally:
        await conn.close()


async def test_concurrent_upgrades_both_succeed_and_apply_each_migration_once(
    postgres_server: URL, tmp_path: Path
) -> None:
    for _ in range(3):  # a race can hide; a lock holds every time
        async with empty_database(Backend("postgres", postgres_server), tmp_path) as url:
            results = await asyncio.gather(
                alembic_cli(url, "upgrade", "head"), alembic_cli(url, "upgrade", "head")
            )
            versions = await _fetch(url, "SELECT version_num FROM alembic_version")

        assert [result.returncode for result in results] == [0, 0], results
        applied = "".join(result.stderr for result in results)
        assert applied.count("Running upgrade  -> ") == 1
        assert applied.count("Running upgrade ") == len(
            list((ROOT / "migrations/versions").glob("*.py"))
        )
        assert len(versions) == 1


async def test_failing_migration_leaves_previous_revision_and_no_partial_schema(
    postgres_url: URL, tmp_path: Path
) -> None:
    ini, head = await scripts_with(postgres_url, tmp_path, BROKEN)

    result = await alembic_cli(postgres_url, *ini, "upgrade", "head")

    assert result.returncode != 0
    assert "no_such_table" in result.stderr
    assert await _fetch(postgres_url, "SELECT version_num FROM alembic_version") == [(head,)]
    tables = await _fetch(postgres_url, "SELECT 1 FROM pg_tables WHERE tablename = 'half_done'")
    columns = await _fetch(
        postgres_url,
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'users' AND column_name = 'nickname'",
    )
    assert tables == []
    assert columns == []


ALTERS_USERS = Migration(
    "0a17e7e50000",
    "a migration that needs users to itself",
    upgrade=['op.add_column("users", sa.Column("nickname", sa.String(50)))'],
    downgrade=['op.drop_column("users", "nickname")'],
)


async def _hold_users(url: URL) -> tuple[asyncpg.Connection, Any]:
    """A connection in a long transaction that has read users: it holds a lock every ALTER
    TABLE users must wait for, until the transaction ends."""
    holder = await asyncpg.connect(**asyncpg_args(url))
    transaction = holder.transaction()
    await transaction.start()
    await holder.fetch("SELECT id FROM users")
    return holder, transaction


async def test_migration_waiting_on_a_busy_table_fails_fast_while_reads_go_on(
    postgres_url: URL, tmp_path: Path
) -> None:
    ini, head = await scripts_with(postgres_url, tmp_path, ALTERS_USERS)

    async with serve(postgres_url) as client:
        client.headers.update((await sign_up(client, "reader@example.com")).headers)
        holder, transaction = await _hold_users(postgres_url)
        try:
            started = time.monotonic()
            migration = asyncio.create_task(
                alembic_cli(postgres_url, *ini, "upgrade", "head", MIGRATION_LOCK_TIMEOUT="0.25")
            )
            reads = []
            while not migration.done():
                read_started = time.monotonic()
                response = await client.get("/users")
                reads.append((response.status_code, time.monotonic() - read_started))
            migrated = await migration
            failed_after = time.monotonic() - started
            after = await client.get("/users")
            await transaction.rollback()
        finally:
            await holder.close()

    # The holder lets go only after the migration has ended, so only lock_timeout can end each
    # attempt: 4 of 0.25 s, with pauses of 0.25, 0.5 and 1 s between them. The bound is loose
    # because Alembic's own start-up takes seconds on a loaded machine.
    out = migrated.stderr
    assert migrated.returncode != 0
    assert out.count("retrying in") == 3
    assert "FAILED: lock timeout: a migration waited 0.25 s (MIGRATION_LOCK_TIMEOUT)" in out
    assert "4 times" in out
    assert "Traceback" not in migrated.stdout + out
    assert failed_after < 40
    assert reads
    assert all(status == 200 for status, _ in reads)
    assert max(seconds for _, seconds in reads) < 5  # queued behind the ALTER for 0.25 s at most
    assert [user["email"] for user in after.json()["items"]] == ["reader@example.com"]
    assert await _fetch(postgres_url, "SELECT version_num FROM alembic_version") == [(head,)]


async def test_migration_that_timed_out_on_a_lock_succeeds_on_a_retry_once_it_is_free(
    postgres_url: URL, tmp_path: Path
) -> None:
    ini, _ = await scripts_with(postgres_url, tmp_path, ALTERS_USERS)
    env = os.environ | {
        "DATABASE_URL": postgres_url.render_as_string(hide_password=False),
        "MIGRATION_LOCK_TIMEOUT": "1",
    }
    holder, transaction = await _hold_users(postgres_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", *ini, "upgrade", "head",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    out = ""
    try:
        async with asyncio.timeout(60):
            # The first attempt times out; the holder lets go while Alembic pauses.
            while "retrying in" not in out:
                line = await process.stdout.readline()
                assert line, out
                out += line.decode()
            await transaction.rollback()
            rest, _ = await process.communicate()
    finally:
        await holder.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
    out += rest.decode()

    assert process.returncode == 0, out
    assert "retry 1 of 3" in out
    assert "FAILED" not in out
    assert await _fetch(postgres_url, "SELECT version_num FROM alembic_version") == [
        ("0a17e7e50000",)
    ]
    assert await _fetch(
        postgres_url,
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'users' AND column_name = 'nickname'",
    ) == [(1,)]
