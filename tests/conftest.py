"""Fixtures: one migrated database per backend and run, and each test in a rolled-back transaction.

Every API test runs on SQLite and on Postgres (`backend` is parametrised). Postgres comes from
TEST_POSTGRES_URL, a server URL: the tests create and drop their own databases in it.
"""

import asyncio
import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)

from service import auth, users
from service.api.deps import get_session
from service.config import Settings, normalize_database_url
from service.db import ConnectionGate, Database, create_engine, create_migration_engine
from service.main import create_app
from service.schemas import UserCreate, UserRead
from tests.proxy import Proxy

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = str(ROOT / "alembic.ini")
BACKENDS = ["sqlite", "postgres"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


@dataclass(frozen=True)
class Backend:
    name: str
    server: URL | None  # the Postgres server to create databases in; None for SQLite


def _unavailable(reason: str) -> None:
    # Locally a missing Postgres skips its tests; in CI it must fail the run.
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    raw = os.environ.get("TEST_POSTGRES_URL")
    if not raw:
        _unavailable("TEST_POSTGRES_URL is not set, so the Postgres tests cannot run")
    assert raw is not None
    url = normalize_database_url(raw)

    async def probe() -> None:
        conn = await asyncpg.connect(**asyncpg_args(url), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"Postgres at TEST_POSTGRES_URL is unreachable ({type(exc).__name__}: {exc})")
    return url


def asyncpg_args(url: URL) -> dict[str, Any]:
    return url.translate_connect_args(username="user")


@asynccontextmanager
async def empty_database(backend: Backend, tmp_path: Path) -> AsyncIterator[URL]:
    """A new, empty database of the given backend, dropped afterwards."""
    if backend.server is None:
        yield normalize_database_url(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
        return
    server = backend.server
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(**asyncpg_args(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
async def password_hash() -> str:
    """PASSWORD's hash, computed once: Argon2 takes ~100 ms a time."""
    return await auth.hash_password(PASSWORD)


@dataclass(frozen=True)
class Account:
    """A user as the API shows it, and a bearer token of theirs."""

    user: dict[str, Any]
    token: str

    @property
    def id(self) -> int:
        user_id: int = self.user["id"]
        return user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def settings_for(url: URL, **overrides: Any) -> Settings:
    # Not the .env a developer may keep in the project: the test says every setting it needs.
    return Settings(
        _env_file=None, DATABASE_URL=url.render_as_string(hide_password=False), **overrides
    )


def alembic_config() -> Config:
    config = Config(ALEMBIC_INI)
    config.attributes["configure_logger"] = False
    return config


async def run_alembic(url: URL, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an Alembic command on one connection, as the cookbook's connection-sharing recipe."""
    engine = create_migration_engine(settings_for(url))
    try:
        async with engine.begin() as conn:

            def run(sync_conn: Connection) -> Any:
                config = alembic_config()
                config.attributes["connection"] = sync_conn
                return fn(config, *args, **kwargs)

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def alembic_cli(
    database_url: URL | str, *args: str, cwd: Path = ROOT, **env: str
) -> tuple[int, str]:
    """`python -m alembic ARGS` in `cwd` (the repo root) as a user runs it: exit code, output."""
    if isinstance(database_url, URL):
        database_url = database_url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", *args,
        cwd=cwd, env=os.environ | {"DATABASE_URL": database_url} | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:  # timed out: no Alembic left running after the test
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode()


async def scripts_with(
    url: URL, tmp_path: Path, revision: str, template: str
) -> tuple[tuple[str, str], str]:
    """The project's migrations copied to tmp_path with one more revision on top of head:
    the alembic `-c` option for them, and the head below the new revision."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    ini = ("-c", str(tmp_path / "alembic.ini"))
    _, heads = await alembic_cli(url, *ini, "heads")
    head = heads.split()[0]
    path = tmp_path / "migrations" / "versions" / f"2099_01_01_0000-{revision}_test.py"
    path.write_text(template.format(head=head))
    return ini, head


async def migrate(url: URL, revision: str = "head") -> None:
    await run_alembic(url, command.upgrade, revision)


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
    url = connection.engine.url
    app = create_app(settings_for(url, **settings_overrides), alembic_ini=ALEMBIC_INI)

    async def session_in_the_tests_transaction() -> AsyncIterator[AsyncSession]:
        async with session_on(connection) as session:
            yield session
            await session.commit()

    app.dependency_overrides[get_session] = session_in_the_tests_transaction
    # What the lifespan (not run) sets up, for what runs outside a request's session: the
    # health check and the pool gauges. A plain engine: on SQLite its reads take no write
    # lock, so /health reads beside the test's open transaction.
    engine = create_async_engine(url)
    app.state.database = Database(engine, ConnectionGate(1, timeout=10))
    yield app
    await engine.dispose()


def session_on(connection: AsyncConnection) -> AsyncSession:
    """A session in the test's transaction (SQLAlchemy's "Joining a Session into an External
    Transaction"): its commit releases a SAVEPOINT, its rollback rolls back to one, and the
    test's own rollback undoes everything at the end."""
    return AsyncSession(
        connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@asynccontextmanager
async def served(url: URL, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app on its own engine, as uvicorn runs it (lifespan included)."""
    settings = settings_for(url, **({"DB_CONNECT_TIMEOUT": 2, "DB_POOL_TIMEOUT": 2} | overrides))
    app = create_app(settings, alembic_ini=ALEMBIC_INI)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def sign_up(
    client: httpx.AsyncClient, email: str, *, name: str = "Ada", password: str = PASSWORD
) -> Account:
    """Sign up and log in through the API, as a new user does."""
    created = await client.post("/users", json={"email": email, "name": name, "password": password})
    assert created.status_code == 201, created.text
    token = await log_in(client, email, password)
    return Account(created.json(), token)


async def log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


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
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=me.headers
    ) as client:
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


@pytest.fixture
def chdir_root() -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(ROOT)
    yield
    os.chdir(cwd)
