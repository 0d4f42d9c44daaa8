"""Expand now, contract one release later: each release's schema keeps the release before working.

- The previous release (its commit in deploy/releases/previous; its service/ read from git)
  serves its API on a database migrated to today's head.
- Today's code serves its API on a database migrated by the next release kept in
  deploy/releases/v2 (laid out by scripts/release-tree), whose models match its migrations.

A migration that drops or renames what the older code reads breaks the smoke test below.
"""

import io
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from tests.support import ROOT, unavailable
from tests.support.migrations import Migration, alembic_cli, alembic_config, migrate, scripts_with
from tests.support.processes import uvicorn

PREVIOUS = ROOT / "deploy" / "releases" / "previous"
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


class SmokeFailed(Exception):
    """A request of the smoke test did not get the answer the API promises."""


async def api_smoke(base_url: str) -> int:
    """Every endpoint, as a client uses them: sign up, log in, users, items, pages, 403, log out.
    The number of requests, all answered as the API promises."""
    requests = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
            nonlocal requests
            requests += 1
            response = await client.request(method, path, **kwargs)
            if response.status_code != expect:
                raise SmokeFailed(
                    f"{method} {path}: {response.status_code}, expected {expect}: "
                    f"{response.text[:300]}"
                )
            return response.json() if response.content else None

        async def account(name: str) -> tuple[int, dict[str, str]]:
            email, password = f"{name}-{uuid.uuid4().hex[:8]}@example.com", "smoke test password"
            body = {"email": email, "name": name, "password": password}
            user = await call("POST", "/users", 201, json=body)
            form = {"username": email.upper(), "password": password}
            token = (await call("POST", "/auth/token", 200, data=form))["access_token"]
            return user["id"], {"Authorization": f"Bearer {token}"}

        ada, as_ada = await account("Ada")
        me = await call("GET", "/users/me", 200, headers=as_ada)
        renamed = await call("PATCH", f"/users/{ada}", 200, headers=as_ada, json={"name": "A."})
        if me["id"] != ada or renamed["name"] != "A.":
            raise SmokeFailed(f"/users/me or PATCH /users/{ada} answered {me}, {renamed}")
        first = await call(
            "POST", f"/users/{ada}/items", 201, headers=as_ada, json={"title": "one"}
        )
        second = await call(
            "POST",
            f"/users/{ada}/items",
            201,
            headers=as_ada,
            json={"title": "two", "description": "the second"},
        )
        changed = await call(
            "PATCH", f"/items/{first['id']}", 200, headers=as_ada, json={"description": "new"}
        )
        read = await call("GET", f"/items/{first['id']}", 200, headers=as_ada)
        if read != changed or read["description"] != "new":
            raise SmokeFailed(f"GET /items/{first['id']} answered {read}, wrote {changed}")
        page = await call("GET", f"/users/{ada}/items?limit=1", 200, headers=as_ada)
        rest = await call(
            "GET", f"/users/{ada}/items?limit=1&cursor={page['next_cursor']}", 200, headers=as_ada
        )
        if [i["id"] for i in page["items"] + rest["items"]] != [first["id"], second["id"]]:
            raise SmokeFailed(f"pages of /users/{ada}/items: {page}, {rest}")
        users = await call("GET", "/users?limit=100", 200, headers=as_ada)
        if ada not in [u["id"] for u in users["items"]]:
            raise SmokeFailed(f"GET /users left out user {ada}")
        await call("GET", f"/users/{ada}", 200, headers=as_ada)

        bob, as_bob = await account("Bob")
        await call("PATCH", f"/items/{first['id']}", 403, headers=as_bob, json={"title": "mine"})
        await call("DELETE", f"/items/{first['id']}", 204, headers=as_ada)
        await call("GET", f"/items/{first['id']}", 404, headers=as_bob)
        await call("DELETE", "/auth/token", 204, headers=as_ada)
        await call("GET", "/users/me", 401, headers=as_ada)
        await call("DELETE", f"/users/{bob}", 204, headers=as_bob)
    return requests


def _previous_commit() -> str:
    lines = [line.strip() for line in PREVIOUS.read_text().splitlines()]
    (commit,) = [line for line in lines if line and not line.startswith("#")]
    return commit


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's service/, alembic.ini and migrations/, read from git."""
    commit = _previous_commit()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "service", "alembic.ini", "migrations"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        unavailable(
            f"git cannot read the previous release {commit} ({archive.stderr.decode().strip()});"
            " a full clone of the repository has it"
        )
    source = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    return source


@pytest.fixture(scope="session")
def next_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source of the release kept in deploy/releases/v2, laid out by scripts/release-tree."""
    source = tmp_path_factory.mktemp("next-release")
    laid_out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "release-tree"), "v2", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert laid_out.returncode == 0, laid_out.stderr
    return source


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


async def test_previous_release_serves_its_api_on_todays_schema(
    fresh_url: URL, previous_release: Path, record_property: Callable[[str, object], None]
) -> None:
    await migrate(fresh_url)

    async with uvicorn(_url(fresh_url), cwd=previous_release) as server:
        requests = await api_smoke(server.base_url)

    record_property(
        "figure",
        f"previous release {_previous_commit()[:12]} on today's head {HEAD}"
        f" ({fresh_url.get_backend_name()}): {requests} requests, each answered as promised",
    )


async def test_next_release_migrates_to_its_models_and_todays_api_works_on_its_schema(
    fresh_url: URL, next_release: Path, record_property: Callable[[str, object], None]
) -> None:
    await migrate(fresh_url)
    # As the next release's image migrates: its own env.py, models and migrations.
    migrated = await alembic_cli(fresh_url, "upgrade", "head", cwd=next_release)
    assert migrated.returncode == 0, migrated.stderr
    checked = await alembic_cli(fresh_url, "check", cwd=next_release)
    assert checked.returncode == 0, checked.stderr

    async with uvicorn(_url(fresh_url)) as server:
        requests = await api_smoke(server.base_url)

    record_property(
        "figure",
        f"today's code on deploy/releases/v2's head ({fresh_url.get_backend_name()}):"
        f" {requests} requests, each answered as promised",
    )


RENAMES_A_COLUMN = Migration(
    "0b7eac0de000",
    "items: description becomes details, which the code reading it cannot see",
    upgrade=['op.alter_column("items", "description", new_column_name="details")'],
    downgrade=['op.alter_column("items", "details", new_column_name="description")'],
)


async def test_a_migration_that_renames_what_the_previous_release_reads_fails_its_smoke(
    postgres_url: URL, previous_release: Path, tmp_path: Path
) -> None:
    ini, _ = await scripts_with(postgres_url, tmp_path, RENAMES_A_COLUMN)
    migrated = await alembic_cli(postgres_url, *ini, "upgrade", "head")
    assert migrated.returncode == 0, migrated.stderr

    async with uvicorn(_url(postgres_url), cwd=previous_release) as server:
        with pytest.raises(SmokeFailed, match=r"^POST /users/\d+/items: 5\d\d"):
            await api_smoke(server.base_url)


def test_next_release_still_applies_after_the_model_changes_a_user_makes(tmp_path: Path) -> None:
    # docs/migrations.md's own example (items.price), a wider title with an index, a new import.
    service = tmp_path / "service"
    shutil.copytree(ROOT / "service", service, ignore=shutil.ignore_patterns("__pycache__"))
    edits = {
        "models.py": [
            ("mapped_column(String(200))", "mapped_column(String(300), index=True)"),
            (
                "Mapped[str | None] = mapped_column(Text)\n",
                "Mapped[str | None] = mapped_column(Text)\n    price: Mapped[int | None]\n",
            ),
        ],
        "schemas.py": [
            (
                "from datetime import datetime\n",
                "from datetime import datetime\nfrom decimal import Decimal\n",
            ),
            (
                "    description: str | None\n    created_at",
                "    description: str | None\n    price: Decimal | None\n    created_at",
            ),
        ],
    }
    for name, changes in edits.items():
        source = (service / name).read_text()
        for old, new in changes:
            assert source.count(old) == 1, old
            source = source.replace(old, new)
        (service / name).write_text(source)

    applied = subprocess.run(
        ["git", "apply", "--check", str(ROOT / "deploy" / "releases" / "v2" / "service.patch")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert applied.returncode == 0, applied.stderr
