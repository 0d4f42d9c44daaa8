"""A request's database work is one session: a route that writes gets one transaction, all or
nothing, committed before the response; a route that only reads gets a session that cannot
write, in autocommit: two round trips on Postgres."""

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import func, insert, select
from sqlalchemy.engine import URL
from starlette.types import Message, Receive, Scope, Send

from service import auth, users
from service.api.deps import (
    CurrentReader,
    CurrentUser,
    ReadSessionDep,
    SessionDep,
    get_read_session,
    get_session,
)
from service.db import WriteSession, create_engine
from service.main import ROUTERS
from service.models import User
from service.schemas import UserCreate
from tests.proxy import Proxy
from tests.support.accounts import PASSWORD, Account, sign_up
from tests.support.app import app_for, client_of, serve
from tests.support.databases import settings_for


async def _create(session: WriteSession, email: str, name: str) -> None:
    data = UserCreate(email=email, name=name, password=PASSWORD)
    await users.create_user(session, data=data, password_hash="not-a-real-hash")


async def _stored_names(url: URL) -> list[str]:
    engine = create_engine(settings_for(url))
    try:
        async with engine.connect() as connection:
            return list((await connection.scalars(select(User.name))).all())
    finally:
        await engine.dispose()


async def test_write_that_fails_half_way_keeps_none_of_its_statements(migrated_url: URL) -> None:
    router = APIRouter()

    @router.post("/two")
    async def create_two_users_with_one_email(session: SessionDep) -> None:
        await _create(session, "dup@example.com", "First")
        await _create(session, "dup@example.com", "Second")

    async with serve(migrated_url, router) as client:
        response = await client.post("/two")

    assert response.status_code == 409
    assert response.json() == {"detail": "a user with email dup@example.com already exists"}
    assert await _stored_names(migrated_url) == []


async def test_write_then_unexpected_error_rolls_back(migrated_url: URL) -> None:
    router = APIRouter()

    @router.post("/then-fail")
    async def create_then_fail(session: SessionDep) -> None:
        await _create(session, "a@example.com", "Lost")
        raise RuntimeError("boom")

    async with serve(migrated_url, router) as client:
        response = await client.post("/then-fail")

    assert response.status_code == 500
    assert response.json()["detail"] == "internal server error"
    assert await _stored_names(migrated_url) == []


async def test_write_is_committed_before_the_response_starts(migrated_url: URL) -> None:
    app = app_for(migrated_url)
    seen_at_response_start: list[int] = []
    engine = create_engine(settings_for(migrated_url))

    async def watch(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_look(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST":
                # Another connection sees the row as the response starts: it is committed.
                async with engine.connect() as connection:
                    count = await connection.scalar(select(func.count()).select_from(User))
                seen_at_response_start.append(count or 0)
            await send(message)

        await app(scope, receive, send_and_look)

    try:
        async with app.router.lifespan_context(app), client_of(watch) as client:
            response = await client.post(
                "/users", json={"email": "c@example.com", "name": "C", "password": PASSWORD}
            )
    finally:
        await engine.dispose()

    assert response.status_code == 201
    assert response.json()["email"] == "c@example.com"
    assert seen_at_response_start == [1]


async def test_token_lookup_reads_and_writes_of_a_request_share_one_connection(
    migrated_url: URL,
) -> None:
    # With a pool of one and no overflow, a second checkout within the request would wait
    # and time out (503).
    router = APIRouter()

    @router.post("/read-then-write")
    async def read_then_write(_caller: CurrentUser, session: SessionDep) -> int:
        await _create(session, "b@example.com", "Both")
        rows, _ = await users.list_users(session, after=None, limit=10)
        return len(rows)

    overrides: dict[str, Any] = {"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0, "DB_POOL_TIMEOUT": 1}
    async with serve(migrated_url, router, **overrides) as client:
        client.headers.update((await sign_up(client, "a@example.com")).headers)
        response = await client.post("/read-then-write")

    assert response.status_code == 200
    assert response.json() == 2  # the read saw the write: same transaction
    assert await _stored_names(migrated_url) == ["Ada", "Both"]


@pytest.mark.parametrize(
    ("request_", "round_trips"),
    [
        ("GET /users/{other}", 2),  # the token, the user: in autocommit, no BEGIN or COMMIT
        ("GET /users/me", 1),
        ("GET /users?limit=5", 2),
        ("GET /users/{me}/items", 2),
        ("PATCH /users/{me}", 4),  # BEGIN, the token, the UPDATE, COMMIT
        ("POST /users/{me}/items", 4),
    ],
)
async def test_round_trips_to_postgres_per_request(
    proxied_url: tuple[Proxy, URL], request_: str, round_trips: int
) -> None:
    proxy, url = proxied_url
    method, path = request_.split()
    async with serve(url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0) as client:
        me = await sign_up(client, "me@example.com")
        other = await sign_up(client, "other@example.com")
        client.headers.update(me.headers)
        assert (await client.post(f"/users/{me.id}/items", json={"title": "T"})).status_code == 201
        path = path.format(me=me.id, other=other.id)
        body = _BODIES.get(method)
        for _ in range(2):  # asyncpg prepares a statement on its first use by a connection
            assert (await client.request(method, path, json=body)).status_code < 300
        before = proxy.round_trips
        response = await client.request(method, path, json=body)
        seen = proxy.round_trips - before

    assert response.status_code < 300, response.text
    assert seen == round_trips


_BODIES = {"PATCH": {"name": "New"}, "POST": {"title": "New"}}


write_in_a_read_session = APIRouter()


@write_in_a_read_session.post("/write-in-a-read-session")
async def insert_a_user_in_a_read_session(_caller: CurrentReader, session: ReadSessionDep) -> None:
    await session.execute(insert(User).values(email="w@example.com", name="Written"))


async def test_write_through_a_read_session_fails_loudly(
    migrated_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(migrated_url, write_in_a_read_session) as client:
        client.headers.update((await sign_up(client, "a@example.com")).headers)
        with caplog.at_level(logging.ERROR):
            response = await client.post("/write-in-a-read-session")

    assert response.status_code == 500
    # Postgres: "cannot execute INSERT in a read-only transaction"; SQLite: "attempt to write
    # a readonly database".
    assert any(word in caplog.text for word in ("read-only transaction", "readonly database"))
    assert await _stored_names(migrated_url) == ["Ada"]


async def test_write_through_a_read_session_fails_in_the_tests_transaction_too(
    app: FastAPI, client: httpx.AsyncClient, me: Account
) -> None:
    # The tests' sessions join the test's transaction (tests/support/databases.py); a route
    # that writes where it should only read must fail there as it would in production.
    app.include_router(write_in_a_read_session)

    response = await client.post("/write-in-a-read-session")
    after = await client.patch(f"/users/{me.id}", json={"name": "Still writes"})

    assert response.status_code == 500
    assert after.status_code == 200  # the read session's refusal ended with it


def _sessions(dependant: Dependant) -> set[str]:
    """The session dependencies a route's dependencies open, all the way down."""
    found = {d.call.__name__ for d in dependant.dependencies if d.call in _SESSION_DEPENDENCIES}
    for sub in dependant.dependencies:
        found |= _sessions(sub)
    return found


_SESSION_DEPENDENCIES = (get_session, get_read_session)


def test_every_route_has_one_session_and_reads_in_a_read_session() -> None:
    """A route's token check runs in the route's own session (CurrentUser with SessionDep,
    CurrentReader with ReadSessionDep), and a GET only reads (RFC 9110: it is safe)."""
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 15
    for route in routes:
        sessions = _sessions(route.dependant)
        assert len(sessions) <= 1, f"{route.methods} {route.path} opens {sorted(sessions)}"
        if route.methods == {"GET"} and route.path.startswith(("/users", "/items")):
            assert sessions == {"get_read_session"}, f"GET {route.path}: {sessions}"


async def test_password_change_holds_no_connection_while_it_hashes(
    migrated_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(migrated_url)
    in_use_while_hashing: list[int] = []
    hash_password = auth.hash_password

    async def watched(password: str) -> str:
        pools: list[Any] = [app.state.database.engine.pool, app.state.database.read_engine.pool]
        in_use_while_hashing.append(sum(pool.checkedout() for pool in pools))
        return await hash_password(password)

    async with app.router.lifespan_context(app), client_of(app) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        monkeypatch.setattr(auth, "hash_password", watched)
        changed = await client.patch(f"/users/{me.id}", json={"password": "a new secret"})
        renamed = await client.patch(f"/users/{me.id}", json={"name": "Renamed"})

    assert changed.status_code == 200
    assert renamed.json()["name"] == "Renamed"
    assert in_use_while_hashing == [0]


async def test_name_change_does_not_wait_for_a_password_turn(migrated_url: URL) -> None:
    async with serve(migrated_url) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        turns = auth._hashing_threads()
        for _ in range(turns):  # every turn taken, as in a burst of logins
            await auth.PASSWORD_REQUESTS.acquire()
        try:
            async with asyncio.timeout(10):  # waiting for a turn, it would never end
                renamed = await client.patch(f"/users/{me.id}", json={"name": "Quick"})
            changed = asyncio.create_task(
                client.patch(f"/users/{me.id}", json={"password": "a new secret"})
            )
        finally:
            for _ in range(turns):
                auth.PASSWORD_REQUESTS.release()
        assert (await changed).status_code == 200

    assert renamed.status_code == 200
