"""Alembic as the tests run it: in-process on a connection handed over, and as its command line;
and revisions a test puts on top of the project's head."""

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import Script
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


# --- the lint: squawk on the Postgres SQL of a revision ---------------------------------------

SQUAWK = Path(sys.executable).with_name("squawk")
IGNORE = re.compile(r"^ *# squawk-ignore-file (?P<rule>[a-z-]+): (?P<reason>\S.*)$", re.MULTILINE)
# Offline rendering connects to nothing; the URL only picks the dialect (env.py reads it).
LINT_URL = "postgresql://lint@localhost/lint"


def lint_config(*versions: Path, ini: Path = ALEMBIC_INI) -> Config:
    """The migrations of `ini`, and those in `versions`, for rendering to SQL."""
    config = Config(ini, output_buffer=io.StringIO())
    config.attributes["configure_logger"] = False
    locations = [ini.parent / "migrations" / "versions", *versions]
    config.set_main_option("version_locations", os.pathsep.join(map(str, locations)))
    return config


def squawk(config: Config, script: Script) -> list[dict[str, Any]]:
    """squawk's findings on the SQL of this one revision, as `alembic upgrade --sql` renders it
    (with DATABASE_URL set to LINT_URL)."""
    buffer = io.StringIO()
    config.output_buffer = buffer
    start = script.down_revision
    assert not isinstance(start, tuple | list), "merge revisions are not linted yet"
    command.upgrade(config, f"{start}:{script.revision}" if start else script.revision, sql=True)
    source = Path(script.path).read_text()
    assert len(IGNORE.findall(source)) == source.count("squawk-ignore"), (
        f"{script.path}: write `# squawk-ignore-file RULE: REASON`, with a reason"
    )
    ignores = "".join(f"-- squawk-ignore-file {m['rule']}\n" for m in IGNORE.finditer(source))
    result = subprocess.run(
        [
            SQUAWK, "--config", str(ROOT / ".squawk.toml"), "--reporter", "json",
            "--stdin-filepath", f"{Path(script.path).name}.sql",
        ],
        input=ignores + buffer.getvalue(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def report(findings: list[dict[str, Any]]) -> str:
    return "\n".join(f"{f['rule_name']}: {f['message']} {f['help'] or ''}" for f in findings)
