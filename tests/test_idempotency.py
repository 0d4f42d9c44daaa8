"""Idempotency-Key on the routes that create: a repeat gets the first response again and
creates nothing; another request with the key is refused; keys are the caller's own."""

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from service import items
from service.api.deps import CurrentUser, SessionDep
from service.api.idempotency import CreationDep
from service.db import create_engine
from service.models import IdempotencyKey, Item, User, now
from service.schemas import ItemCreate, ItemRead
from tests.support.accounts import PASSWORD, Account, sign_up
from tests.support.app import serve
from tests.support.databases import asyncpg_args, settings_for


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def _count(connection: AsyncConnection, model: type[Any]) -> int:
    return await connection.scalar(select(func.count()).select_from(model)) or 0


def _same_response(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]


async def test_repeated_item_create_gets_the_first_response_and_creates_nothing(
    client: httpx.AsyncClient, me: Account, connection: AsyncConnection
) -> None:
    key = _key()
    first = await client.post(f"/users/{me.id}/items", json={"title": "Once"}, headers=key)
    items_after_first = await _count(connection, Item)

    again = await client.post(f"/users/{me.id}/items", json={"title": "Once"}, headers=key)

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    _same_response(first, again)
    assert again.headers["idempotent-replayed"] == "true"
    assert await _count(connection, Item) == items_after_first


async def test_repeated_sign_up_gets_the_first_response_and_creates_nothing(
    anonymous: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    key = _key()
    body = {"email": "once@example.com", "name": "Once", "password": PASSWORD}
    first = await anonymous.post("/users", json=body, headers=key)
    users_after_first = await _count(connection, User)

    again = await anonymous.post("/users", json=body, headers=key)
    unkeyed = await anonymous.post("/users", json=body)

    assert first.status_code == 201
    _same_response(first, again)
    assert unkeyed.status_code == 409  # without a key: a second sign-up, as ever
    assert await _count(connection, User) == users_after_first


@pytest.mark.parametrize(
    ("path", "first", "other"),
    [
        ("/users/{me}/items", {"title": "A"}, {"title": "B"}),
        (
            "/users",
            {"email": "a@example.com", "name": "A", "password": PASSWORD},
            {"email": "b@example.com", "name": "A", "password": PASSWORD},
        ),
    ],
)
async def test_same_key_with_another_request_answers_422_and_creates_nothing(
    client: httpx.AsyncClient,
    me: Account,
    connection: AsyncConnection,
    path: str,
    first: dict[str, Any],
    other: dict[str, Any],
) -> None:
    key = _key()
    url = path.format(me=me.id)
    assert (await client.post(url, json=first, headers=key)).status_code == 201
    before = (await _count(connection, Item), await _count(connection, User))

    refused = await client.post(url, json=other, headers=key)

    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert (await _count(connection, Item), await _count(connection, User)) == before


async def test_keys_belong_to_their_caller(
    client: httpx.AsyncClient, me: Account, make_user: Callable[..., Any]
) -> None:
    other: Account = await make_user()
    key = _key()

    mine = await client.post(f"/users/{me.id}/items", json={"title": "T"}, headers=key)
    theirs = await client.post(
        f"/users/{other.id}/items", json={"title": "T"}, headers=key | other.headers
    )

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


async def test_a_sign_up_repeated_with_another_password_is_refused_and_none_is_kept_in_clear(
    anonymous: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    body = {"email": "p@example.com", "name": "P", "password": PASSWORD}
    key = _key()
    assert (await anonymous.post("/users", json=body, headers=key)).status_code == 201

    other = await anonymous.post("/users", json=body | {"password": "another secret"}, headers=key)
    same = await anonymous.post("/users", json=body, headers=key)

    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert same.headers["idempotent-replayed"] == "true"
    stored = (await connection.execute(select(IdempotencyKey.__table__))).one()
    assert PASSWORD not in str(stored)
    assert stored.password_hash.startswith("$argon2id$")  # the account's own, as slow to test


@pytest.mark.parametrize("key", ["x" * 256, "tab\there", "é"])
async def test_malformed_key_answers_422(client: httpx.AsyncClient, me: Account, key: str) -> None:
    response = await client.post(
        f"/users/{me.id}/items",
        json={"title": "T"},
        headers=[(b"Idempotency-Key", key.encode())],
    )

    schema = await client.get("/openapi.json")
    parameters = schema.json()["paths"]["/users/{user_id}/items"]["post"]["parameters"]
    (documented,) = [p for p in parameters if p["name"] == "Idempotency-Key"]
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["ctx"]["pattern"] == documented["schema"]["pattern"]  # the rule the schema states


async def _expire_every_key(connection: AsyncConnection) -> None:
    # As IDEMPOTENCY_TTL after the requests would find them.
    await connection.execute(update(IdempotencyKey).values(expires_at=now() - timedelta(seconds=1)))


async def test_an_expired_key_serves_again(
    client: httpx.AsyncClient, me: Account, connection: AsyncConnection
) -> None:
    key = _key()
    first = await client.post(f"/users/{me.id}/items", json={"title": "T"}, headers=key)
    await _expire_every_key(connection)

    again = await client.post(f"/users/{me.id}/items", json={"title": "T"}, headers=key)

    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]


async def test_expired_keys_are_removed_by_later_keyed_requests(
    client: httpx.AsyncClient, me: Account, connection: AsyncConnection
) -> None:
    for _ in range(3):
        await client.post(f"/users/{me.id}/items", json={"title": "T"}, headers=_key())
    await _expire_every_key(connection)

    await client.post(f"/users/{me.id}/items", json={"title": "T"}, headers=_key())

    assert await _count(connection, IdempotencyKey) == 1  # only the last request's


failing = APIRouter()


@failing.post("/users/{user_id}/items-then-fail")
async def create_then_fail(
    caller: CurrentUser, user_id: int, data: ItemCreate, session: SessionDep, reply: CreationDep
) -> None:
    assert await reply.replay(session, caller_id=caller.id) is None
    item = await items.create_item(session, owner_id=user_id, data=data, caller=caller)
    reply.created(session, item, ItemRead, location=f"/items/{item.id}")
    raise RuntimeError("the request fails after its write")


async def test_a_request_that_fails_keeps_neither_its_write_nor_its_key(
    app: FastAPI, client: httpx.AsyncClient, me: Account, connection: AsyncConnection
) -> None:
    app.include_router(failing)
    before = await _count(connection, Item)

    response = await client.post(
        f"/users/{me.id}/items-then-fail", json={"title": "T"}, headers=_key()
    )

    assert response.status_code == 500
    assert await _count(connection, Item) == before
    assert await _count(connection, IdempotencyKey) == 0


async def _rows(url: URL, model: type[Any]) -> int:
    engine = create_engine(settings_for(url))
    try:
        async with engine.connect() as connection:
            return await _count(connection, model)
    finally:
        await engine.dispose()


REPEATS = 20


async def test_a_keyed_create_sent_many_times_at_once_and_in_turn_creates_one_row(
    migrated_url: URL, record_property: Callable[[str, object], None]
) -> None:
    key = _key()
    async with serve(migrated_url) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        url = f"/users/{me.id}/items"

        at_once = await asyncio.gather(
            *(client.post(url, json={"title": "Once"}, headers=key) for _ in range(REPEATS))
        )
        in_turn = [
            await client.post(url, json={"title": "Once"}, headers=key) for _ in range(REPEATS)
        ]

    answered = [r for r in at_once + in_turn if r.status_code == 201]
    in_flight = [r for r in at_once if r.status_code == 409]
    assert len(answered) + len(in_flight) == 2 * REPEATS, [r.text for r in at_once]
    assert all(r.status_code == 201 for r in in_turn)
    for response in answered:
        _same_response(answered[0], response)
    for response in in_flight:
        assert response.json() == {
            "detail": "a request with this Idempotency-Key is still in progress"
        }
    assert await _rows(migrated_url, Item) == 1
    record_property(
        "figure",
        f"Idempotency-Key ({migrated_url.get_backend_name()}): {2 * REPEATS} sends, 1 item,"
        f" {len(answered)} identical 201s, {len(in_flight)} 409 while the first was in flight",
    )


async def test_a_repeat_while_the_first_is_in_flight_answers_409(postgres_url: URL) -> None:
    key = str(uuid.uuid4())
    async with serve(postgres_url) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        # Another connection holds the key's lock, as the first request does until it commits.
        holder = await asyncpg.connect(**asyncpg_args(postgres_url))
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", 0x1DE, f"{me.id}:{key}"
                )
                in_flight = await client.post(
                    f"/users/{me.id}/items", json={"title": "T"}, headers={"Idempotency-Key": key}
                )
        finally:
            await holder.close()
        after = await client.post(
            f"/users/{me.id}/items", json={"title": "T"}, headers={"Idempotency-Key": key}
        )

    assert in_flight.status_code == 409
    assert after.status_code == 201
