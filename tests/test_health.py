import httpx
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL

from service.db import ConnectionGate, Database, create_engine
from service.main import create_app
from tests.conftest import (
    ALEMBIC_INI,
    PASSWORD,
    alembic_config,
    migrate,
    served,
    settings_for,
)

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_health_reports_database_ok_and_head_revision(migrated_url: URL) -> None:
    async with served(migrated_url) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "revision": HEAD}


async def test_health_on_unmigrated_database_returns_503_saying_upgrade(fresh_url: URL) -> None:
    async with served(fresh_url) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert "alembic upgrade head" in body["detail"]


async def test_requests_on_unmigrated_database_answer_503_saying_upgrade(fresh_url: URL) -> None:
    some_token = {"Authorization": f"Bearer {'x' * 43}"}
    async with served(fresh_url) as client:
        listed = await client.get("/users", headers=some_token)
        created = await client.post(
            "/users", json={"email": "a@example.com", "name": "A", "password": PASSWORD}
        )

    for response in (listed, created):
        assert response.status_code == 503
        assert response.json() == {
            "detail": "database schema is not up to date; run `alembic upgrade head`"
        }
        assert "retry-after" not in response.headers


async def test_health_on_database_behind_head_returns_503_naming_revisions(fresh_url: URL) -> None:
    first = ScriptDirectory.from_config(alembic_config()).get_base()
    assert isinstance(first, str)
    await migrate(fresh_url, first)

    async with served(fresh_url) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert first in response.json()["detail"]
    assert f"code expects {HEAD}" in response.json()["detail"]


async def test_health_on_database_ahead_of_the_code_says_ready(migrated_url: URL) -> None:
    # A newer release migrated first (expand); this code serves on until it is replaced.
    engine = create_engine(settings_for(migrated_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    finally:
        await engine.dispose()

    async with served(migrated_url) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "revision": "f00dfeedbeef"}


async def test_health_with_unreachable_database_returns_503() -> None:
    # Nothing listens on port 9 (discard) here: connecting fails at once.
    url = URL.create("postgresql+asyncpg", username="u", password="pw", host="127.0.0.1", port=9)

    async with served(url) as client:
        ready = await client.get("/health")
        live = await client.get("/health/live")

    assert ready.status_code == 503
    assert ready.json() == {"status": "error", "detail": "database unavailable"}
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}


async def test_health_live_touches_no_database() -> None:
    app: FastAPI = create_app(
        settings_for(URL.create("sqlite+aiosqlite", database="/nonexistent/dir/x.db")),
        alembic_ini=ALEMBIC_INI,
    )
    engine = create_engine(app.state.settings)
    app.state.database = Database(engine, ConnectionGate(1, 1))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        live = await client.get("/health/live")
        ready = await client.get("/health")
    await engine.dispose()

    assert live.status_code == 200
    assert ready.status_code == 503
