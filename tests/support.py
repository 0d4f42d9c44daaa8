"""What the tests share, beside the fixtures in conftest.py: databases, Alembic, the app and a
client of it, accounts, the service as a process, and the bad-input world."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import APIRouter, FastAPI
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.types import ASGIApp

from service.config import Settings, normalize_database_url
from service.db import create_migration_engine
from service.main import create_app
from service.models import AccessToken, Item, User

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = ROOT / "alembic.ini"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PASSWORD = "correct horse battery"


def unavailable(reason: str) -> None:
    """Skip: something the test needs is missing. In CI that fails the run instead."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


# --- databases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    server: URL | None  # the Postgres server to create databases in; None for SQLite


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


def settings_for(url: URL, **overrides: Any) -> Settings:
    # Not the .env a developer may keep in the project: the test says every setting it needs.
    return Settings(
        _env_file=None,
        DATABASE_URL=url.render_as_string(hide_password=False),
        ALEMBIC_CONFIG=ALEMBIC_INI,
        **overrides,
    )


def session_on(connection: AsyncConnection) -> AsyncSession:
    """A session in the test's transaction (SQLAlchemy's "Joining a Session into an External
    Transaction"): its commit releases a SAVEPOINT, its rollback rolls back to one, and the
    test's own rollback undoes everything at the end."""
    return AsyncSession(
        connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


# --- Alembic -----------------------------------------------------------------------------------


def alembic_config(ini: Path = ALEMBIC_INI) -> Config:
    config = Config(ini)
    config.attributes["configure_logger"] = False
    return config


async def run_alembic(
    url: URL, fn: Callable[..., Any], *args: Any, ini: Path = ALEMBIC_INI, **kwargs: Any
) -> Any:
    """Run an Alembic command on one connection handed over with no transaction begun: each
    migration commits, as with `alembic upgrade`, so autocommit_block() works too."""
    engine = create_migration_engine(settings_for(url))
    try:
        async with engine.connect() as conn:

            def run(sync_conn: Connection) -> Any:
                config = alembic_config(ini)
                config.attributes["connection"] = sync_conn
                return fn(config, *args, **kwargs)

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def migrate(url: URL, revision: str = "head", *, ini: Path = ALEMBIC_INI) -> None:
    await run_alembic(url, command.upgrade, revision, ini=ini)


async def alembic_cli(
    database_url: URL | str, *args: str, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m alembic ARGS` in `cwd` (the repo root) as a user runs it. Alembic's log is
    on stderr, `--sql` output on stdout."""
    if isinstance(database_url, URL):
        database_url = database_url.render_as_string(hide_password=False)
    argv = [sys.executable, "-m", "alembic", *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=os.environ | {"DATABASE_URL": database_url} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:  # timed out: no Alembic left running after the test
            process.kill()
            await process.wait()
    return subprocess.CompletedProcess(argv, process.returncode or 0, out.decode(), err.decode())


@dataclass(frozen=True)
class Migration:
    """A revision a test puts on top of the project's head: its operations, one a line."""

    revision: str
    message: str
    upgrade: list[str]
    downgrade: list[str]

    def source(self, head: str) -> str:
        return "\n".join(
            [
                f'"""{self.message}\n\nRevision ID: {self.revision}\nRevises: {head}\n"""\n',
                "import sqlalchemy as sa",
                "from alembic import op\n",
                f'revision = "{self.revision}"',
                f'down_revision = "{head}"\n\n',
                "def upgrade() -> None:",
                *(f"    {line}" for line in self.upgrade),
                "\n\ndef downgrade() -> None:",
                *(f"    {line}" for line in self.downgrade),
                "",
            ]
        )


async def scripts_with(
    url: URL, tmp_path: Path, migration: Migration
) -> tuple[tuple[str, str], str]:
    """The project's migrations copied to tmp_path with `migration` on top of head: the
    alembic `-c` option for them, and the head below the new revision."""
    shutil.copy(ALEMBIC_INI, tmp_path / "alembic.ini")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    ini = ("-c", str(tmp_path / "alembic.ini"))
    heads = await alembic_cli(url, *ini, "heads")
    head = heads.stdout.split()[0]
    path = tmp_path / "migrations" / "versions" / f"2099_01_01_0000-{migration.revision}_test.py"
    path.write_text(migration.source(head))
    return ini, head


# --- the app and its clients -------------------------------------------------------------------


def app_for(
    url: URL,
    *routers: APIRouter,
    tracer_provider: "TracerProvider | None" = None,
    **overrides: Any,
) -> FastAPI:
    """The service's app on `url`, with `routers` added; timeouts short, for a test."""
    settings = settings_for(url, **({"DB_CONNECT_TIMEOUT": 2, "DB_POOL_TIMEOUT": 2} | overrides))
    app = create_app(settings, tracer_provider=tracer_provider)
    for router in routers:
        app.include_router(router)
    return app


def client_of(app: ASGIApp, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client that talks to `app` in-process. It re-raises an exception that reaches the
    server (httpx's raise_app_exceptions): one the app should have answered fails the test."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@asynccontextmanager
async def serve(
    url: URL,
    *routers: APIRouter,
    tracer_provider: "TracerProvider | None" = None,
    **overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on `url` (see app_for) on its own engine, as uvicorn runs it:
    lifespan included."""
    app = app_for(url, *routers, tracer_provider=tracer_provider, **overrides)
    async with app.router.lifespan_context(app), client_of(app) as client:
        yield client


# --- accounts ----------------------------------------------------------------------------------


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


# --- the service and the project as a user runs them -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def copy_of_project(into: Path) -> Path:
    """The project's files, as a fresh clone has them plus the ones not yet added to git (a
    user's new resource), without what .gitignore leaves out, in a directory of their own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    return into


SERVICE = ("-m", "service")
UVICORN = ("-m", "uvicorn", "service.main:app")


class Server:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"
        self.output = ""

    async def stop(self, *, signalled: bool = False) -> int:
        """SIGTERM (unless already sent), then the exit code once the process ends."""
        if not signalled:
            self.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.process.communicate(), timeout=30)
        self.output = out.decode()
        return self.process.returncode or 0


def _env(database_url: str | None, **extra: str) -> dict[str, str]:
    """The environment, with DATABASE_URL set to `database_url`, or unset for None."""
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env | extra


@asynccontextmanager
async def uvicorn(
    database_url: str | None,
    *args: str,
    cwd: Path = ROOT,
    command: tuple[str, ...] = SERVICE,
    **env: str,
) -> AsyncIterator[Server]:
    """`python -m service` in `cwd` (the repo root, or an older release's source): uvicorn on
    service.main:app, exiting 0 after a graceful stop. Or another `command`, such as UVICORN."""
    port = free_port()
    # A session of its own: if the test fails, its worker processes go down with it too
    # (killed alone, the supervisor would leave them holding our output pipe).
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--port", str(port), *args,
        cwd=cwd, env=_env(database_url, **env), start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    server = Server(process, port)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(600):  # up to a minute on a loaded machine
                try:
                    await client.get("/health/live")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "uvicorn exited"
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("uvicorn did not answer /health/live within a minute")
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


# --- bad input: a world to send it to, and what a clear 4xx is ---------------------------------


@dataclass(frozen=True)
class Write:
    """A write endpoint and a body it accepts."""

    method: str
    path: str  # with {user} and {item} placeholders
    body: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


WRITES = [
    Write("POST", "/users", {"email": "new@example.com", "name": "New", "password": "new-secret"}),
    Write(
        "PATCH",
        "/users/{user}",
        {"email": "new@example.com", "name": "New", "password": "secret-2"},
    ),
    Write("POST", "/users/{user}/items", {"title": "New", "description": "New"}),
    Write("PATCH", "/items/{item}", {"title": "New", "description": "New"}),
]


@dataclass(frozen=True)
class World:
    """One user with one item, and a way to tell that a request changed nothing."""

    client: httpx.AsyncClient
    connection: AsyncConnection
    user: dict[str, Any]
    item: dict[str, Any]

    def url(self, path: str) -> str:
        return path.format(user=self.user["id"], item=self.item["id"])

    async def snapshot(self) -> tuple[Any, ...]:
        counts = [
            await self.connection.scalar(select(func.count()).select_from(model))
            for model in (User, Item, AccessToken)
        ]
        user = (await self.client.get(f"/users/{self.user['id']}")).json()
        item = (await self.client.get(f"/items/{self.item['id']}")).json()
        return (*counts, user, item)


async def make_world(
    client: httpx.AsyncClient, connection: AsyncConnection, account: Account
) -> World:
    """The account's user, with a new item; the client signed in as that user."""
    client.headers.update(account.headers)
    item = await client.post(f"/users/{account.id}/items", json={"title": "Old"})
    assert item.status_code == 201, item.text
    return World(client, connection, account.user, item.json())


def assert_clear_4xx(response: httpx.Response, status: int, what: str) -> list[dict[str, Any]]:
    """The response is `status` with FastAPI's error shape; returns 422's error list."""
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.strip(), what
        return []
    assert isinstance(detail, list), what
    assert detail, what
    for error in detail:
        assert isinstance(error["msg"], str), what
        assert error["msg"].strip(), what
        assert isinstance(error["loc"], list), what
        assert error["loc"], what
        # FastAPI's default renders a validator's ValueError in ctx as `{}`.
        assert all(not isinstance(v, dict | list) for v in error.get("ctx", {}).values()), what
    return detail
