"""Bad input: a world to send it to (a user with an item), and what a clear 4xx is."""

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.models import AccessToken, Item, User
from tests.support.accounts import Account


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
