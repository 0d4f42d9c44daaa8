"""The benchmark's databases and requests, defined once for bench/run and bench/instructions.

`databases()` makes one migrated, seeded database per app. `requests()` builds each endpoint's
requests; `write_requests()` puts them in a file, one "METHOD PATH TOKEN [JSON BODY]" a line,
that bench/wrk/users.lua replays over HTTP and bench/instructions.py replays in-process, so
both send the same requests.
"""

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from service import auth
from service.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# The ladder: raw driver SQL, then SQLAlchemy Core on a connection, then the service.
APPS = {"baseline": "bench.baseline:app", "core": "bench.core:app", "service": "service.main:app"}
ENDPOINTS = {
    "get": "GET /users/{id}",
    "list": "GET /users?limit=20",
    "patch": "PATCH /users/{id}",
    "item": "POST /users/{id}/items",
}
TOKENS = 256  # signed-in users: each request is one of them, at random
PASSWORD = "bench-password"  # noqa: S105 - every seeded user's


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    token: str
    body: str = ""  # JSON, or empty


def app_env(url: URL) -> dict[str, str]:
    """Every app's settings, in bench/run and bench/instructions alike."""
    return os.environ | {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        # The same fixed pool for every app: no connections opened and closed under load.
        "DB_POOL_SIZE": "10",
        "DB_MAX_OVERFLOW": "0",
        # The service as it runs in production: an access line per request, in JSON.
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
    }


def make_tokens(users: int) -> dict[int, str]:
    """A bearer token for each of the first TOKENS users."""
    return {user_id: secrets.token_urlsafe(32) for user_id in range(1, min(users, TOKENS) + 1)}


def requests(endpoint: str, tokens: dict[int, str], users: int, count: int) -> list[Request]:
    """`count` requests to one endpoint, the same ones in every run for the same tokens."""
    rng = random.Random(endpoint)
    accounts = sorted(tokens.items())
    out = []
    for n in range(count):
        user_id, token = rng.choice(accounts)  # PATCH and POST change the caller's own data
        if endpoint == "get":
            out.append(Request("GET", f"/users/{rng.randint(1, users)}", token))
        elif endpoint == "list":
            out.append(Request("GET", "/users?limit=20", token))
        elif endpoint == "patch":
            out.append(Request("PATCH", f"/users/{user_id}", token, _json(name=f"Renamed {n}")))
        elif endpoint == "item":
            out.append(Request("POST", f"/users/{user_id}/items", token, _json(title=f"Bench {n}")))
        else:
            raise ValueError(f"unknown endpoint {endpoint!r}")
    return out


def _json(**fields: str) -> str:
    return json.dumps(fields, separators=(",", ":"))


def write_requests(
    directory: Path, endpoints: list[str], tokens: dict[int, str], users: int
) -> dict[str, Path]:
    """A file of 10,000 requests for each endpoint, in `directory`."""
    files = {endpoint: directory / f"requests-{endpoint}.txt" for endpoint in endpoints}
    for endpoint, path in files.items():
        lines = (
            f"{r.method} {r.path} {r.token} {r.body}\n"
            for r in requests(endpoint, tokens, users, 10_000)
        )
        path.write_text("".join(lines))
    return files


def read_requests(path: Path) -> list[Request]:
    return [Request(*line.split(" ", 3)) for line in path.read_text().splitlines()]


async def seed(url: URL, users: int, tokens: dict[int, str]) -> None:
    """Users 1..N straight into a migrated database (sign-up would hash N passwords), with
    PASSWORD as every one's password, and the tokens."""
    password_hash = await auth.hash_password(PASSWORD)
    now = datetime.now(UTC)
    user_rows = [
        (f"seed-{n}@example.com", f"User {n}", password_hash, now, now) for n in range(1, users + 1)
    ]
    token_rows = [
        (auth.token_hash(token), user_id, now, now + timedelta(days=1))
        for user_id, token in tokens.items()
    ]
    user_sql = "INSERT INTO users (email, name, password_hash, created_at, updated_at)"
    access_sql = "INSERT INTO access_tokens (token_hash, user_id, created_at, expires_at)"
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        # The layout SQLAlchemy writes for SQLite: naive UTC "YYYY-MM-DD HH:MM:SS.ffffff".
        stamp = now.replace(tzinfo=None).isoformat(sep=" ")
        later = (now + timedelta(days=1)).replace(tzinfo=None).isoformat(sep=" ")
        with contextlib.closing(sqlite3.connect(url.database)) as conn, conn:
            conn.executemany(
                f"{user_sql} VALUES (?, ?, ?, ?, ?)", [(*r[:3], stamp, stamp) for r in user_rows]
            )
            conn.executemany(
                f"{access_sql} VALUES (?, ?, ?, ?)", [(*r[:2], stamp, later) for r in token_rows]
            )
        return
    conn = await asyncpg.connect(**url.translate_connect_args(username="user"))
    try:
        await conn.executemany(f"{user_sql} VALUES ($1, $2, $3, $4, $5)", user_rows)
        await conn.executemany(f"{access_sql} VALUES ($1, $2, $3, $4)", token_rows)
    finally:
        await conn.close()


def postgres_server() -> URL:
    return normalize_database_url(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES))


async def admin(server: URL, *statements: str) -> str:
    """Run statements on the Postgres server; its version."""
    try:
        conn = await asyncpg.connect(**server.translate_connect_args(username="user"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        where = server.render_as_string(hide_password=True)
        raise BenchError(f"no Postgres at {where} ({exc}): set BENCH_POSTGRES_URL") from None
    try:
        for statement in statements:
            await conn.execute(statement)
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def databases(
    server: URL | None, users: int, tokens: dict[int, str]
) -> AsyncIterator[dict[str, URL]]:
    """A database for each app (SQLite when `server` is None), migrated and seeded alike: the
    first one, then copies of it. Removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if server is None:
            urls = {name: normalize_database_url(f"sqlite:///{tmp}/{name}.db") for name in APPS}
        else:
            tag = uuid.uuid4().hex[:8]
            urls = {name: server.set(database=f"bench_{tag}_{name}") for name in APPS}
        first, *copies = urls.values()
        try:
            if server is not None:
                await admin(server, f'CREATE DATABASE "{first.database}"')
            await _migrate(first)
            await seed(first, users, tokens)
            for url in copies:
                if server is None:
                    shutil.copyfile(str(first.database), str(url.database))
                else:
                    await admin(
                        server, f'CREATE DATABASE "{url.database}" TEMPLATE "{first.database}"'
                    )
            yield urls
        finally:
            if server is not None:
                await admin(
                    server,
                    *(
                        f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'
                        for u in urls.values()
                    ),
                )


async def _migrate(url: URL) -> None:
    env = os.environ | {"DATABASE_URL": url.render_as_string(hide_password=False)}
    alembic = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "alembic", "upgrade", "head"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await alembic.communicate()
    if alembic.returncode != 0:
        raise BenchError(f"alembic upgrade head failed:\n{out.decode()[-3000:]}")
