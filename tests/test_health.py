import logging

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from service.db import create_engine
from tests.support.accounts import PASSWORD
from tests.support.app import serve
from tests.support.databases import settings_for
from tests.support.migrations import alembic_config, migrate

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_health_reports_database_ok_and_head_revision(migrated_url: URL) -> None:
    async with serve(migrated_url) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "revision": HEAD}


async def test_health_on_unmigrated_database_returns_503_saying_upgrade(fresh_url: URL) -> None:
    async with serve(fresh_url) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "detail": f"database is at revision none, code expects {HEAD}; run `alembic upgrade head`",
    }


async def test_requests_on_unmigrated_database_answer_503_saying_upgrade(fresh_url: URL) -> None:
    some_token = {"Authorization": f"Bearer {'x' * 43}"}
    async with serve(fresh_url) as client:
        listed = await client.get("/users", headers=some_token)
        created = await client.post(
            "/users", json={"email": "a@example.com", "name": "A", "password": PASSWORD}
        )

    for response in (listed, created):
        assert response.status_code == 503
        assert response.json() == {
            "detail": "database schema does not match the code: a table or column is missing"
            " (GET /health says whether to run `alembic upgrade head`)"
        }
        assert "retry-after" not in response.headers


async def test_health_on_database_behind_head_returns_503_naming_revisions(fresh_url: URL) -> None:
    first = ScriptDirectory.from_config(alembic_config()).get_base()
    assert isinstance(first, str)
    await migrate(fresh_url, first)

    async with serve(fresh_url) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "detail": f"database is at revision {first}, code expects {HEAD};"
        " run `alembic upgrade head`",
    }


async def test_health_on_database_ahead_of_the_code_is_ready_with_its_revision(
    migrated_url: URL,
) -> None:
    # A newer release migrated the database; this one keeps working on it (expand/contract).
    newer = "f00dcafe1234"
    engine = create_engine(settings_for(migrated_url))
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    await engine.dispose()

    async with serve(migrated_url) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "revision": newer}


UNREACHABLE = [
    pytest.param(
        "postgresql+asyncpg://app:s3cret-pw@127.0.0.1:{port}/app",
        "connection refused",
        "postgresql+asyncpg://app:***@127.0.0.1:{port}/app",
        id="postgres-refused",
    ),
    pytest.param(
        "sqlite+aiosqlite:////nonexistent/dir/app.db",
        "unable to open database file",
        "sqlite+aiosqlite:////nonexistent/dir/app.db",
        id="sqlite-cannot-open",
    ),
]


@pytest.mark.parametrize(("url", "cause", "where"), UNREACHABLE)
async def test_unreachable_database_is_logged_with_its_cause_and_masked_url(
    caplog: pytest.LogCaptureFixture, refusing_port: int, url: str, cause: str, where: str
) -> None:
    some_token = {"Authorization": f"Bearer {'x' * 43}"}
    async with serve(make_url(url.format(port=refusing_port))) as client:
        with caplog.at_level(logging.WARNING, logger="service"):
            live = await client.get("/health/live")  # touches no database
            ready = await client.get("/health")
            listed = await client.get("/users", headers=some_token)

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.json() == {"status": "error", "detail": "database unavailable"}
    assert listed.status_code == 503
    assert listed.json() == {"detail": "database unavailable, try again later"}
    where = where.format(port=refusing_port)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"health check: database unavailable: {cause} ({where})",
        f"GET /users: database unavailable: {cause} ({where})",
    ]
    assert "s3cret-pw" not in caplog.text
