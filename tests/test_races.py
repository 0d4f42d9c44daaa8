"""Races between requests, decided by the database rather than by checks in Python."""

import asyncio

import httpx
import pytest
from sqlalchemy import bindparam, delete, text
from sqlalchemy.engine import URL

from service.db import create_engine
from service.models import Item, User
from tests.support.accounts import sign_up
from tests.support.app import serve
from tests.support.databases import settings_for

_WAITING_ON_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND datname = current_database()"
)


@pytest.mark.parametrize(
    ("request_", "status", "detail"),
    [
        ("PATCH /users/{user}", 401, "invalid or expired token"),
        ("POST /users/{user}/items", 401, "invalid or expired token"),
        ("PATCH /items/{item}", 401, "invalid or expired token"),
    ],
)
async def test_write_racing_the_delete_of_its_user_gets_401_not_500(
    postgres_url: URL, request_: str, status: int, detail: str
) -> None:
    # A request that writes locks its caller's row as it checks the token, so it waits on the
    # row lock of a DELETE still in flight; once the DELETE commits, Postgres re-checks, finds
    # the user and the token gone, and the request is not signed in.
    engine = create_engine(settings_for(postgres_url))
    observer = engine.execution_options(isolation_level="AUTOCOMMIT")  # a fresh view per poll
    method, path = request_.split()
    try:
        async with serve(postgres_url) as client:
            owner = await sign_up(client, "r@example.com")
            client.headers.update(owner.headers)
            item = (await client.post(f"/users/{owner.id}/items", json={"title": "T"})).json()
            body = {"name": "X"} if path == "/users/{user}" else {"title": "X"}
            url = path.format(user=owner.id, item=item["id"])
            async with observer.connect() as observing, engine.begin() as deleter:
                await deleter.execute(
                    delete(Item).where(Item.owner_id == bindparam("u")), {"u": owner.id}
                )
                await deleter.execute(
                    delete(User).where(User.id == bindparam("u")), {"u": owner.id}
                )
                racing = asyncio.create_task(client.request(method, url, json=body))
                while not await observing.scalar(_WAITING_ON_A_LOCK):
                    assert not racing.done(), (await racing).text
                    await asyncio.sleep(0.01)
            response: httpx.Response = await racing
    finally:
        await engine.dispose()

    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail.format(item=item["id"])}


@pytest.mark.parametrize(("if_match", "status"), [(True, 412), (False, 409)])
async def test_write_racing_another_write_to_its_item_loses_with_412_or_409(
    postgres_url: URL, if_match: bool, status: int
) -> None:
    # The request reads version 1, then its UPDATE ... WHERE version = 1 waits on the row lock
    # of another writer's UPDATE; once that commits, Postgres re-checks and finds version 2.
    engine = create_engine(settings_for(postgres_url))
    observer = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with serve(postgres_url) as client:
            owner = await sign_up(client, "r@example.com")
            client.headers.update(owner.headers)
            created = await client.post(f"/users/{owner.id}/items", json={"title": "T"})
            item = created.json()
            headers = {"If-Match": created.headers["etag"]} if if_match else {}
            async with observer.connect() as observing, engine.begin() as other:
                await other.execute(
                    text("UPDATE items SET title = 'other', version = version + 1 WHERE id = :id"),
                    {"id": item["id"]},
                )
                racing = asyncio.create_task(
                    client.patch(f"/items/{item['id']}", json={"title": "mine"}, headers=headers)
                )
                while not await observing.scalar(_WAITING_ON_A_LOCK):
                    assert not racing.done(), (await racing).text
                    await asyncio.sleep(0.01)
            response: httpx.Response = await racing
            after = (await client.get(f"/items/{item['id']}")).json()
    finally:
        await engine.dispose()

    assert response.status_code == status, response.text
    assert after["title"] == "other"  # the write that lost changed nothing
    if if_match:
        assert response.headers["etag"] == '"2"'
