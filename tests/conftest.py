"""Fixtures: one migrated database per backend and run, and each test in a rolled-back transaction.

Every API test runs on SQLite and on Postgres (`backend` is parametrised). Postgres comes from
TEST_POSTGRES_URL, a server URL: the tests create and drop their own databases in it. The helpers
the fixtures and the tests share are in tests/support/, a module a job.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service import auth, users
from service.config import normalize_database_url
from service.db import create_engine
from service.schemas import UserCreate, UserRead
from tests.proxy import Proxy
from tests.support import unavailable
from tests.support.accounts import PASSWORD, Account
from tests.support.app import app_for, client_of
from tests.support.databases import (
    Backend,
    asyncpg_args,
    database_in,
    empty_database,
    session_on,
    settings_for,
)
from tests.support.migrations import migrate

BACKENDS = ["sqlite", "postgres"]


# What tests recorded with record_property("figure", ...): printed after the run (CI's log).
FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        FIGURES.extend(str(value) for name, value in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in sorted(FIGURES):
            terminalreporter.line(line)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    raw = os.environ.get("TEST_POSTGRES_URL")
    if not raw:
        unavailable("TEST_POSTGRES_URL is not set, so the Postgres tests cannot run")
    assert raw is not None
    url = normalize_database_url(raw)

    async def probe() -> None:
        conn = await asyncpg.connect(**asyncpg_args(url), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"Postgres at TEST_POSTGRES_URL is unreachable ({type(exc).__name__}: {exc})")
    return url


@pytest.fixture(scope="session")
async def password_hash() -> str:
    """PASSWORD's hash, computed once: Argon2 takes ~100 ms a time."""
    return await auth.hash_password(PASSWORD)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None)
    return Backend("postgres", request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
async def migrated_engine(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    """The database of this run for one backend, built by the real migrations."""
    async with empty_database(backend, tmp_path_factory.mktemp(backend.name)) as url:
        await migrate(url)
        engine = create_engine(settings_for(url))
        yield engine
        await engine.dispose()


@pytest.fixture
async def connection(migrated_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that is rolled back after the test."""
    async with migrated_engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings of the `app` under test beyond the database URL; a test module may override."""
    return {}


@pytest.fixture
async def app(
    connection: AsyncConnection, settings_overrides: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    """The app, with the real session dependencies, whose sessions are in the test's transaction
    (tests/support/databases.py). Its lifespan does not run."""
    url = connection.engine.url
    app = app_for(url, **settings_overrides)
    # For what works outside a request: the health check, the pool gauges, the error handlers.
    # A plain engine: on SQLite its reads take no write lock, so /health reads beside the
    # test's open transaction.
    engine = create_async_engine(url)
    app.state.database = database_in(connection, engine)
    yield app
    await engine.dispose()


@pytest.fixture
async def fresh_url(backend: Backend, tmp_path: Path) -> AsyncIterator[URL]:
    """An empty database of its own for one test."""
    async with empty_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def migrated_url(fresh_url: URL) -> URL:
    await migrate(fresh_url)
    return fresh_url


@pytest.fixture
async def postgres_url(postgres_server: URL, tmp_path: Path) -> AsyncIterator[URL]:
    """A migrated Postgres database of its own, for tests that only apply to Postgres."""
    async with empty_database(Backend("postgres", postgres_server), tmp_path) as url:
        await migrate(url)
        yield url


@pytest.fixture
async def proxied_url(postgres_url: URL) -> AsyncIterator[tuple[Proxy, URL]]:
    """Postgres behind a proxy the test controls (a network outage has no SQLite equivalent)."""
    assert postgres_url.host is not None
    proxy = Proxy(postgres_url.host, postgres_url.port or 5432)
    await proxy.start()
    yield proxy, postgres_url.set(host="127.0.0.1", port=proxy.port)
    await proxy.close()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[URL]:
    """A migrated SQLite file of its own, for tests that only apply to SQLite."""
    async with empty_database(Backend("sqlite", None), tmp_path) as url:
        await migrate(url)
        yield url


@pytest.fixture
def make_user(connection: AsyncConnection, password_hash: str) -> Callable[..., Any]:
    """Signs up a user and logs them in, straight in the database: the API's sign-up and
    login hash a password each time (tests/test_auth.py goes through them)."""

    async def make(email: str | None = None, name: str = "Ada") -> Account:
        data = UserCreate(
            email=email or f"{uuid.uuid4().hex[:10]}@example.com", name=name, password=PASSWORD
        )
        async with session_on(connection) as session:
            user = await users.create_user(session, data=data, password_hash=password_hash)
            token = await auth.issue_token(session, user_id=user.id, ttl=3600)
            await session.commit()
        return Account(UserRead.model_validate(user).model_dump(mode="json"), token)

    return make


@pytest.fixture
async def me(make_user: Callable[..., Any]) -> Account:
    """The account `client` is signed in as."""
    account: Account = await make_user(email="me@example.com", name="Me")
    return account


@pytest.fixture
async def client(app: FastAPI, me: Account) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, signed in as `me`."""
    async with client_of(app, me.headers) as client:
        yield client


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, signed in as no one."""
    async with client_of(app) as client:
        yield client


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, so no one else takes it, but not
    listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel completes them) and never
    answers: a database that does not respond, until the client's timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
