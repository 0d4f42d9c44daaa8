"""Every migration, rendered to Postgres SQL one revision at a time, linted by squawk.

A migration that would take a lock stalling the traffic of a table that has rows fails, naming
squawk's rule: an index built without CONCURRENTLY, a column added NOT NULL with a volatile
default, a column's type changed, a foreign key validated under lock. Rules that do not fit
the project are off in .squawk.toml, each with its reason; one migration may switch a rule off
for itself with a line `# squawk-ignore-file RULE: REASON`. The release overlays in
deploy/releases/ are linted as scripts/release-tree lays them out, on today's head.
"""

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from tests.support import ROOT
from tests.support.databases import ALEMBIC_INI

SQUAWK = Path(sys.executable).with_name("squawk")
# (release, revision) of each migration kept in deploy/releases/*/.
RELEASES = sorted(
    (path.parts[-4], revision)
    for path in (ROOT / "deploy" / "releases").glob("*/migrations/versions/*.py")
    for revision in re.findall(r'^revision[^=]*= "(\w+)"$', path.read_text(), re.MULTILINE)
)
IGNORE = re.compile(r"^ *# squawk-ignore-file (?P<rule>[a-z-]+): (?P<reason>\S.*)$", re.MULTILINE)
# Offline rendering connects to nothing; the URL only picks the dialect.
LINT_URL = "postgresql://lint@localhost/lint"


def _config(*versions: Path, ini: Path = ALEMBIC_INI) -> Config:
    config = Config(ini, output_buffer=io.StringIO())
    config.attributes["configure_logger"] = False
    locations = [ini.parent / "migrations" / "versions", *versions]
    config.set_main_option("version_locations", os.pathsep.join(map(str, locations)))
    return config


def _revisions(config: Config) -> list[Script]:
    return list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))


def _lint(config: Config, script: Script) -> list[dict[str, Any]]:
    """squawk's findings on the SQL of this one revision, as `alembic upgrade --sql` renders it."""
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


def _report(findings: list[dict[str, Any]]) -> str:
    return "\n".join(f"{f['rule_name']}: {f['message']} {f['help'] or ''}" for f in findings)


@pytest.fixture(autouse=True)
def _postgres_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", LINT_URL)


@pytest.mark.parametrize(
    "revision", [s.revision for s in _revisions(_config())], ids=lambda r: str(r)
)
def test_migration_passes_squawk(
    revision: str, record_property: Callable[[str, object], None]
) -> None:
    config = _config()
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None

    findings = _lint(config, script)

    assert findings == [], f"{script.path}:\n{_report(findings)}"
    ignored = ", ".join(m["rule"] for m in IGNORE.finditer(Path(script.path).read_text()))
    record_property(
        "figure",
        f"squawk: {Path(script.path).relative_to(ROOT)}: no finding"
        + (f" (ignores {ignored}, with its reason)" if ignored else ""),
    )


@pytest.fixture(scope="session")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A release's source as scripts/release-tree lays it out: its migrations on today's head."""
    trees: dict[str, Path] = {}

    def tree(release: str) -> Path:
        if release not in trees:
            trees[release] = tmp_path_factory.mktemp(release)
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "release-tree"), release, str(trees[release])],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        return trees[release]

    return tree


@pytest.mark.parametrize(("release", "revision"), RELEASES, ids=lambda r: str(r))
def test_release_migration_passes_squawk(
    release: str, revision: str, release_tree: Callable[[str], Path]
) -> None:
    config = _config(ini=release_tree(release) / "alembic.ini")
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None

    findings = _lint(config, script)

    assert findings == [], (
        f"deploy/releases/{release}: {Path(script.path).name}:\n{_report(findings)}"
    )


BAD_MIGRATION = '''"""{title}

Revision ID: 0badbad0{n:04d}
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "0badbad0{n:04d}"
down_revision = "{head}"


def upgrade() -> None:
    {statement}


def downgrade() -> None:
    pass
'''

LOCKING_MIGRATIONS = {
    # Blocks every write to items while the index builds.
    "require-concurrent-index-creation": 'op.create_index("ix_items_title", "items", ["title"])',
    # Rewrites every row under ACCESS EXCLUSIVE: no reads, no writes.
    "adding-field-with-default": (
        'op.add_column("items", sa.Column("public_id", sa.Uuid(), nullable=False,'
        ' server_default=sa.text("gen_random_uuid()")))'
    ),
    # Rewrites the table under ACCESS EXCLUSIVE.
    "changing-column-type": (
        'op.alter_column("items", "title", type_=sa.String(300), existing_type=sa.String(200))'
    ),
    # Scans items, blocking its writes (and those of users), to validate every row at once.
    "adding-foreign-key-constraint": (
        'op.create_foreign_key("fk_items_id_users", "items", "users", ["id"], ["id"])'
    ),
}


@pytest.mark.parametrize("rule", LOCKING_MIGRATIONS)
def test_lint_fails_a_migration_that_locks_a_table_naming_the_rule(
    rule: str, tmp_path: Path
) -> None:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    n = list(LOCKING_MIGRATIONS).index(rule)
    (tmp_path / f"2099_01_01_0000-0badbad0{n:04d}_bad.py").write_text(
        BAD_MIGRATION.format(title=rule, n=n, head=head, statement=LOCKING_MIGRATIONS[rule])
    )
    config = _config(tmp_path)
    script = ScriptDirectory.from_config(config).get_revision(f"0badbad0{n:04d}")
    assert script is not None

    findings = _lint(config, script)

    assert rule in {f["rule_name"] for f in findings}, _report(findings)
