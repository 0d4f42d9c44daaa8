"""The service as uvicorn runs it: secrets stay out of every output, SIGTERM drains requests."""

import asyncio
import hashlib
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import URL

from tests.proxy import Proxy
from tests.support.accounts import log_in, sign_up
from tests.support.databases import asyncpg_args
from tests.support.migrations import alembic_cli
from tests.support.processes import SERVICE, UVICORN, uvicorn


@pytest.fixture
async def secret_role(postgres_server: URL) -> AsyncIterator[tuple[str, str, str]]:
    """A login role whose password has %, @, : and /, owning a database of its own."""
    suffix = uuid.uuid4().hex[:8]
    role, database, password = f"svc_{suffix}", f"test_secret_{suffix}", f"p%w@r:d/{suffix}!"
    admin = await asyncpg.connect(**asyncpg_args(postgres_server))
    try:
        literal = password.replace("'", "''")
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'")
        await admin.execute(f"CREATE DATABASE {database} OWNER {role}")
        yield role, database, password
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_password_with_special_characters_connects_and_never_leaks(
    postgres_server: URL, secret_role: tuple[str, str, str]
) -> None:
    role, database, password = secret_role
    host = f"{postgres_server.host}:{postgres_server.port or 5432}"
    url = f"postgresql://{role}:{quote(password, safe='')}@{host}/{database}"
    missing_db = f"postgresql://{role}:{quote(password, safe='')}@{host}/{database}_missing"
    leaks = (password, quote(password, safe=""), quote(password))

    first, second, too_short = "Us3r p@ss:/%", "N3w p@ss:/%", "tiny-pw"
    user = {"email": "s@example.com", "name": "S", "password": first}
    migrated = await alembic_cli(url, "upgrade", "head")
    failed = await alembic_cli(missing_db, "upgrade", "head")
    bodies: list[str] = []
    async with uvicorn(url, "--log-level", "debug", DB_ECHO="true", LOG_LEVEL="debug") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            created = await client.post("/users", json=user)
            token = await log_in(client, user["email"], first)
            auth = {"Authorization": f"Bearer {token}"}
            responses = [
                created,
                await client.get("/health"),
                await client.get("/users", headers=auth),
                await client.post("/users", json=user),
                await client.post("/users", json=user | {"password": too_short}),
                await client.post(
                    "/users", content=b"{", headers={"content-type": "application/json"}
                ),
                await client.post(
                    "/auth/token", data={"username": "s@example.com", "password": "no"}
                ),
                await client.patch(
                    f"/users/{created.json()['id']}", json={"password": second}, headers=auth
                ),
                await client.delete("/auth/token", headers=auth),
                await client.get("/users", headers=auth),
            ]
            bodies += [response.text for response in responses]
            token_2 = await log_in(client, user["email"], second)
        await server.stop()
    stored = await _secrets_stored(url)
    async with uvicorn(missing_db, "--log-level", "debug", LOG_LEVEL="debug") as down:
        async with httpx.AsyncClient(base_url=down.base_url) as client:
            health = await client.get("/health")
            write = await client.post("/users", json=user | {"email": "t@example.com"})
            bodies += [health.text, write.text]
        await down.stop()

    assert migrated.returncode == 0, migrated.stderr
    served_as = f"postgresql+asyncpg://{role}:***@{host}/{database}"
    missing = f'database "{database}_missing" does not exist ({served_as}_missing)'
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [f"FAILED: database unavailable: {missing}"]
    assert failed.stdout == ""
    assert f"database: {served_as}" in server.output
    assert f"health check: database unavailable: {missing}" in down.output
    assert f"POST /users: database unavailable: {missing}" in down.output
    assert created.status_code == 201
    assert [r.status_code for r in responses] == [201, 200, 200, 409, 422, 422, 401, 200, 204, 401]
    assert health.json() == {"status": "error", "detail": "database unavailable"}
    assert write.json() == {"detail": "database unavailable, try again later"}
    alembic_outputs = [migrated.stdout, migrated.stderr, failed.stdout, failed.stderr]
    everything = "\n".join([*alembic_outputs, server.output, down.output, *bodies])
    assert "INSERT INTO users" in server.output  # the SQL echo was on
    assert "UPDATE users SET" in server.output
    token_hashes = [hashlib.sha256(t.encode()).hexdigest() for t in (token, token_2)]
    secrets = [*leaks, first, second, too_short, token, token_2, *token_hashes, *stored]
    assert len(stored) == 2  # the password hash, and token_2's hash: token was revoked
    for secret in secrets:
        assert secret not in everything


async def _secrets_stored(url: str) -> list[str]:
    """Every password hash and token hash in the database: none may be in any output."""
    conn = await asyncpg.connect(url)
    try:
        hashes = await conn.fetch("SELECT password_hash FROM users")
        tokens = await conn.fetch("SELECT token_hash FROM access_tokens")
    finally:
        await conn.close()
    return [row[0] for row in [*hashes, *tokens]]


async def test_sigterm_finishes_in_flight_request_and_exits_cleanly(postgres_url: URL) -> None:
    assert postgres_url.host is not None
    proxy = Proxy(postgres_url.host, postgres_url.port or 5432)
    await proxy.start()
    url = postgres_url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with uvicorn(url, "--timeout-graceful-shutdown", "20") as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                account = await sign_up(client, "g@example.com")
                proxy.pause()  # the next request waits on the database...
                in_flight = asyncio.create_task(
                    client.get(f"/users/{account.id}", headers=account.headers)
                )
                await proxy.held.wait()
                server.process.send_signal(signal.SIGTERM)  # ...while the server is told to stop
                proxy.resume()
                response = await in_flight
            code = await server.stop(signalled=True)
    finally:
        await proxy.close()

    assert response.status_code == 200
    assert response.json() == account.user
    assert code == 0
    assert "Waiting for connections to close" in server.output or "Shutting down" in server.output
    assert "database connections closed" in server.output


async def _json_log_run(url: str, command: tuple[str, ...]) -> list[dict[str, Any]]:
    """The log lines of a server on `url` that answers a failing read and an unknown path."""
    async with uvicorn(url, command=command, LOG_FORMAT="json") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            failed = await client.get(
                "/users/7", headers={"Authorization": f"Bearer {'x' * 43}", "X-Request-ID": "r-1"}
            )
            await client.get("/nope", headers={"X-Request-ID": "r-2"})
        await server.stop()
    assert failed.status_code == 503
    return [json.loads(line) for line in server.output.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [SERVICE, UVICORN], ids=["python -m service", "uvicorn"])
async def test_json_logs_one_object_per_line_with_request_ids(
    fresh_url: URL, command: tuple[str, ...]
) -> None:
    # An empty database: requests reach it and get 503, which logs an error for its request.
    events = await _json_log_run(fresh_url.render_as_string(hide_password=False), command)

    access = [e for e in events if e["logger"] == "service.access"]
    assert [(e["method"], e["route"], e["status"], e["request_id"]) for e in access[1:]] == [
        ("GET", "/users/{user_id}", 503, "r-1"),
        ("GET", "unmatched", 404, "r-2"),
    ]
    assert access[0]["route"] == "/health/live"  # the start-up probe
    assert all(isinstance(e["duration_ms"], float) for e in access)
    (error,) = [e for e in events if e["level"] == "error"]
    assert error["request_id"] == "r-1"
    assert error["event"].startswith("GET /users/7: database schema does not match the code: ")
    assert any(e["logger"] == "uvicorn.error" for e in events)  # uvicorn's own lines too


async def test_python_m_service_and_plain_uvicorn_log_the_same_lines(fresh_url: URL) -> None:
    url = fresh_url.render_as_string(hide_password=False)

    def shape(events: list[dict[str, Any]]) -> list[tuple[str, str, str, tuple[str, ...]]]:
        # Times, ports, process ids and durations differ from run to run; nothing else may.
        return [
            (e["logger"], e["level"], re.sub(r"\d+", "N", e["event"]), tuple(sorted(e)))
            for e in events
        ]

    service, plain = await _json_log_run(url, SERVICE), await _json_log_run(url, UVICORN)

    assert shape(service) == shape(plain)


async def test_metrics_count_every_workers_requests(migrated_url: URL) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    async with uvicorn(url, WEB_CONCURRENCY="2") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(20):
                assert (await client.get("/nope")).status_code == 404
            scrapes = [(await client.get("/metrics")).text for _ in range(6)]
        await server.stop()

    counted = {
        line
        for text in scrapes
        for line in text.splitlines()
        if line.startswith("http_requests_total{")
    }
    # Whichever worker answers the scrape, it reports both workers' requests.
    assert counted == {'http_requests_total{method="GET",route="unmatched",status="404"} 20.0'}


async def test_dotenv_sets_the_log_format_and_a_misspelt_url_leaves_the_default_named(
    tmp_path: Path,
) -> None:
    # DATABASE_URI is no setting: the SQLite default is served, and the log says so.
    (tmp_path / ".env").write_text("LOG_FORMAT=json\n")
    typo = "postgresql://app:s3cret-pw@db/app"
    async with uvicorn(None, cwd=tmp_path, DATABASE_URI=typo) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            health = await client.get("/health")
        await server.stop()

    events = [json.loads(line) for line in server.output.splitlines()]  # every line is JSON
    assert {
        "event": "database: sqlite+aiosqlite:///./app.db (DATABASE_URL is not set: the default)",
        "logger": "service.main",
        "level": "info",
    }.items() <= next(e for e in events if e["logger"] == "service.main").items()
    assert any(e["logger"] == "uvicorn.error" for e in events)  # uvicorn's own lines too
    assert health.status_code == 503  # ./app.db, here: a new, empty database
    assert health.json()["detail"].startswith("database is at revision none")
    assert (tmp_path / "app.db").exists()
    assert "s3cret-pw" not in server.output
