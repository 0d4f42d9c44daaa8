"""Every migration, rendered to Postgres SQL one revision at a time, linted by squawk.

A migration that would take a lock stalling the traffic of a table that has rows fails, naming
squawk's rule: an index built without CONCURRENTLY, a column added NOT NULL with a volatile
default, a column's type changed, a foreign key validated under lock. Rules that do not fit
the project are off in .squawk.toml, each with its reason; one migration may switch a rule off
for itself with a line `# squawk-ignore-file RULE: REASON`. The release overlays in
deploy/releases/ are linted as scripts/release-tree lays them out, on today's head.
"""

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import Script, ScriptDirectory

from tests.support import ROOT
from tests.support.migrations import IGNORE, LINT_URL, lint_config, report, squawk

# (release, revision) of each migration kept in deploy/releases/*/.
RELEASES = sorted(
    (path.parts[-4], revision)
    for path in (ROOT / "deploy" / "releases").glob("*/migrations/versions/*.py")
    for revision in re.findall(r'^revision[^=]*= "(\w+)"$', path.read_text(), re.MULTILINE)
)


def _revisions() -> list[Script]:
    return list(reversed(list(ScriptDirectory.from_config(lint_config()).walk_revisions())))


@pytest.fixture(autouse=True)
def _postgres_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", LINT_URL)


@pytest.mark.parametrize("revision", [s.revision for s in _revisions()], ids=lambda r: str(r))
def test_migration_passes_squawk(
    revision: str, record_property: Callable[[str, object], None]
) -> None:
    config = lint_config()
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None

    findings = squawk(config, script)

    assert findings == [], f"{script.path}:\n{report(findings)}"
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
    config = lint_config(ini=release_tree(release) / "alembic.ini")
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None

    findings = squawk(config, script)

    assert findings == [], (
        f"deploy/releases/{release}: {Path(script.path).name}:\n{report(findings)}"
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
    head = ScriptDirectory.from_config(lint_config()).get_current_head()
    n = list(LOCKING_MIGRATIONS).index(rule)
    (tmp_path / f"2099_01_01_0000-0badbad0{n:04d}_bad.py").write_text(
        BAD_MIGRATION.format(title=rule, n=n, head=head, statement=LOCKING_MIGRATIONS[rule])
    )
    config = lint_config(tmp_path)
    script = ScriptDirectory.from_config(config).get_revision(f"0badbad0{n:04d}")
    assert script is not None

    findings = squawk(config, script)

    assert rule in {f["rule_name"] for f in findings}, report(findings)
