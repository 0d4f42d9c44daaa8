"""What any request may cost: a body over MAX_BODY_BYTES is refused while it streams in, and a
422 stays a few KB whatever the body it answers."""

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.models import User
from tests.support.accounts import Account

LIMIT = 1024 * 1024  # the default
TWO_MIB = "x" * (2 * 1024 * 1024)


def _sign_up(name: str) -> bytes:
    return json.dumps(
        {"email": "big@example.com", "name": name, "password": "a long secret"}
    ).encode()


@pytest.mark.parametrize("token", [False, True], ids=["no token", "token"])
async def test_body_over_the_limit_answers_413_naming_it_and_changes_nothing(
    anonymous: httpx.AsyncClient,
    me: Account,
    connection: AsyncConnection,
    caplog: pytest.LogCaptureFixture,
    token: bool,
) -> None:
    users = await connection.scalar(select(func.count()).select_from(User))
    headers = {"content-type": "application/json"} | (me.headers if token else {})

    with caplog.at_level(logging.DEBUG, logger="service"):
        response = await anonymous.post("/users", content=_sign_up(TWO_MIB), headers=headers)

    assert response.status_code == 413
    assert response.json() == {"detail": f"request body larger than {LIMIT} bytes (MAX_BODY_BYTES)"}
    assert len(response.content) < 1024
    assert await connection.scalar(select(func.count()).select_from(User)) == users
    assert not [r for r in caplog.records if r.name.startswith("service")]  # the access line only


async def test_patch_over_the_limit_answers_413(client: httpx.AsyncClient, me: Account) -> None:
    item = (await client.post(f"/users/{me.id}/items", json={"title": "T"})).json()

    response = await client.patch(f"/items/{item['id']}", json={"title": TWO_MIB})
    login = await client.post("/auth/token", data={"username": "a@b.io", "password": TWO_MIB})

    assert response.status_code == 413
    assert login.status_code == 413
    assert (await client.get(f"/items/{item['id']}")).json()["title"] == "T"


async def test_chunked_body_is_refused_before_it_is_all_read(anonymous: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        nonlocal sent
        for _ in range(64):
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    response = await anonymous.post(
        "/users", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert sent <= LIMIT + 2 * 64 * 1024  # the rest of the 4 MiB was never asked for


async def test_body_just_under_the_limit_gets_a_422_of_a_few_kb(
    anonymous: httpx.AsyncClient,
) -> None:
    name = "x" * (LIMIT - 200)  # too long a name, and echoed back in FastAPI's 422

    response = await anonymous.post(
        "/users", content=_sign_up(name), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert len(response.content) < 4096
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["input"] == "x" * 100 + "…"


async def test_many_errors_are_cut_to_a_few_with_a_count_of_the_rest(
    anonymous: httpx.AsyncClient,
) -> None:
    body: dict[str, Any] = {f"unknown-{n}-{'k' * 500}": n for n in range(1000)}

    response = await anonymous.post("/users", json=body)

    assert response.status_code == 422
    assert len(response.content) < 8192
    errors = response.json()["detail"]
    assert len(errors) == 11
    assert errors[-1]["type"] == "too_many_errors"
    assert all(len(part) <= 101 for error in errors for part in map(str, error["loc"]))
