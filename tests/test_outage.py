"""Outages and overload: 503 within a few seconds, never a hang or a 500, and recovery alone."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import create_engine
from tests.proxy import Proxy
from tests.support.accounts import PASSWORD, sign_up
from tests.support.app import app_for, client_of, serve
from tests.support.databases import settings_for

OVERLOAD: dict[str, Any] = {"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0, "DB_POOL_TIMEOUT": 1}
UNAVAILABLE = {"detail": "database unavailable, try again later"}


async def _timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - start


async def test_database_outage_answers_503_then_recovers_without_restart(
    proxied_url: tuple[Proxy, URL],
) -> None:
    proxy, url = proxied_url
    async with serve(url, DB_CONNECT_TIMEOUT=2) as client:
        client.headers.update((await sign_up(client, "up@example.com")).headers)

        proxy.cut()
        # The token cannot be checked either: 503, not 401.
        during, seconds = await _timed_get(client, "/users")
        health = await client.get("/health")
        write = await client.post(
            "/users", json={"email": "down@example.com", "name": "Down", "password": PASSWORD}
        )

        proxy.restore()
        after = await client.get("/users")
        health_after = await client.get("/health")

    assert during.status_code == 503
    assert during.json() == UNAVAILABLE
    assert seconds < 5
    assert health.status_code == 503
    assert health.json()["status"] == "error"
    assert write.status_code == 503
    assert write.json() == during.json()
    assert after.status_code == 200
    assert [u["email"] for u in after.json()["items"]] == ["up@example.com"]
    assert health_after.json()["status"] == "ok"


async def test_database_that_accepts_but_never_answers_gives_503_within_connect_timeout(
    proxied_url: tuple[Proxy, URL],
) -> None:
    proxy, url = proxied_url
    proxy.pause()  # connections open, but nothing reaches Postgres
    async with serve(url, DB_CONNECT_TIMEOUT=1) as client:
        client.headers["Authorization"] = f"Bearer {'x' * 43}"  # well formed, unknown
        response, seconds = await _timed_get(client, "/users/1")
        proxy.resume()
        after = await client.get("/users/1")

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert seconds < 4
    assert after.status_code == 401  # the database answered: no such token
    assert after.json() == {"detail": "invalid or expired token"}


async def test_exhausted_pool_answers_503_then_serves_again(migrated_url: URL) -> None:
    app = app_for(migrated_url, **OVERLOAD)
    async with app.router.lifespan_context(app), client_of(app) as client:
        client.headers.update((await sign_up(client, "o@example.com")).headers)
        engine: AsyncEngine = app.state.database.read_engine
        async with engine.connect():  # holds the only connection of the pool reads use
            start = time.monotonic()
            burst = await asyncio.gather(*(client.get("/users") for _ in range(5)))
            seconds = time.monotonic() - start
        after = await client.get("/users")

    assert [r.status_code for r in burst] == [503] * 5
    assert all(r.json() == UNAVAILABLE for r in burst)
    assert seconds < 4
    assert [u["email"] for u in after.json()["items"]] == ["o@example.com"]


async def test_burst_on_slow_database_gets_503s_not_500s_and_recovers(
    proxied_url: tuple[Proxy, URL],
) -> None:
    proxy, url = proxied_url
    async with serve(url, **OVERLOAD) as client:
        client.headers.update((await sign_up(client, "o@example.com")).headers)
        assert (await client.get("/users")).status_code == 200  # the one connection, pooled
        proxy.pause()  # the next request holds that connection until resume()
        first = asyncio.create_task(client.get("/users"))
        await proxy.held.wait()
        burst = await asyncio.gather(*(client.get("/users") for _ in range(10)))
        proxy.resume()
        first_response = await first
        after = await client.get("/users")

    assert [r.status_code for r in burst] == [503] * 10
    assert all(r.json() == UNAVAILABLE for r in burst)
    assert first_response.json() == after.json()
    assert [u["email"] for u in after.json()["items"]] == ["o@example.com"]


async def test_statement_timeout_bounds_each_statement_on_postgres(postgres_url: URL) -> None:
    engine = create_engine(settings_for(postgres_url, DB_STATEMENT_TIMEOUT=0.2))
    try:
        async with engine.connect() as conn:
            setting = await conn.scalar(text("SHOW statement_timeout"))
            start = time.monotonic()
            with pytest.raises(Exception, match="statement timeout"):
                await conn.execute(text("SELECT pg_sleep(5)"))
            seconds = time.monotonic() - start
    finally:
        await engine.dispose()

    assert setting == "200ms"
    assert seconds < 2


async def test_concurrent_sqlite_writes_all_succeed(sqlite_url: URL) -> None:
    async with serve(sqlite_url) as client:
        owner = await sign_up(client, "o@example.com")
        client.headers.update(owner.headers)
        # Sign-ups are few: each hashes a password for ~100 ms.
        creates = [
            client.post(
                "/users", json={"email": f"w{n}@example.com", "name": f"W{n}", "password": PASSWORD}
            )
            for n in range(4)
        ]
        items = [
            client.post(f"/users/{owner.id}/items", json={"title": f"t{n}"}) for n in range(50)
        ]
        renames = [client.patch(f"/users/{owner.id}", json={"name": f"n{n}"}) for n in range(25)]
        responses = await asyncio.gather(*creates, *items, *renames)
        listed = (await client.get("/users", params={"limit": 100})).json()["items"]
        owned = (await client.get(f"/users/{owner.id}/items", params={"limit": 100})).json()

    assert [r.status_code for r in responses] == [201] * 54 + [200] * 25
    assert len(listed) == 5
    assert len(owned["items"]) == 50
