"""Alembic as the tests run it: in-process on a connection handed over, and as its command line;
and revisions a test puts on top of the project's head."""

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from service import migrating
from tests.support import ROOT
from tests.support.databases import ALEMBIC_INI, settings_for


def alembic_config(ini: Path = ALEMBIC_INI) -> Config:
    config = Config(ini)
    config.attributes["configure_logger"] = False
    return config


async def run_alembic(
    url: URL, fn: Callable[..., Any], *args: Any, ini: Path = ALEMBIC_INI, **kwargs: Any
) -> Any:
    """Run an Alembic command on one connection handed over with no transaction begun: each
    migration commits, as with `alembic upgrade`, so autocommit_block() works too."""
    engine = migrating.create_engine(settings_for(url))
    try:
        async with engine.connect() as conn:

            def run(sync_conn: Connection) -> Any:
                config = alembic_config(ini)
                config.attributes["connection"] = sync_conn
                return fn(config, *args, **kwargs)

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def migrate(url: URL, revision: str = "head", *, ini: Path = ALEMBIC_INI) -> None:
    await run_alembic(url, command.upgrade, revision, ini=ini)


async def alembic_cli(
    database_url: URL | str, *args: str, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m alembic ARGS` in `cwd` (the repo root) as a user runs it. Alembic's log is
    on stderr, `--sql` output on stdout."""
    if isinstance(database_url, URL):
        database_url = database_url.render_as_string(hide_password=False)
    argv = [sys.executable, "-m", "alembic", *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=os.environ | {"DATABASE_URL": database_url} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:  # timed out: no Alembic left running after the test
            process.kill()
            await process.wait()
    return subprocess.CompletedProcess(argv, process.returncode or 0, out.decode(), err.decode())


@dataclass(frozen=True)
class Migration:
    """A revision a test puts on top of the project's head: its operations, one a line."""

    revision: str
    message: str
    upgrade: list[str]
    downgrade: list[str]

    def source(self, head: str) -> str:
        return "\n".join(
            [
                f'"""{self.message}\n\nRevision ID: {self.revision}\nRevises: {head}\n"""\n',
                "import sqlalchemy as sa",
                "from alembic import op\n",
                f'revision = "{self.revision}"',
                f'down_revision = "{head}"\n\n',
                "def upgrade() -> None:",
                *(f"    {line}" for line in self.upgrade),
                "\n\ndef downgrade() -> None:",
                *(f"    {line}" for line in self.downgrade),
                "",
            ]
        )


async def scripts_with(
    url: URL, tmp_path: Path, migration: Migration
) -> tuple[tuple[str, str], str]:
    """The project's migrations copied to tmp_path with `migration` on top of head: the
    alembic `-c` option for them, and the head below the new revision."""
    shutil.copy(ALEMBIC_INI, tmp_path / "alembic.ini")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    ini = ("-c", str(tmp_path / "alembic.ini"))
    heads = await alembic_cli(url, *ini, "heads")
    head = heads.stdout.split()[0]
    path = tmp_path / "migrations" / "versions" / f"2099_01_01_0000-{migration.revision}_test.py"
    path.write_text(migration.source(head))
    return ini, head
