from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.accounts import PASSWORD, Account


def _aware_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    offset = parsed.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    return parsed


def _new_user(email: str, name: str = "Ada") -> dict[str, str]:
    return {"email": email, "name": name, "password": PASSWORD}


async def test_create_user_returns_201_with_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json=_new_user("Ada@Example.COM", "  Ada  "))

    assert response.status_code == 201
    user = response.json()
    assert response.headers["location"] == f"/users/{user['id']}"
    assert user["email"] == "ada@example.com"
    assert user["name"] == "Ada"
    assert set(user) == {"id", "email", "name", "created_at", "updated_at"}
    created = _aware_utc(user["created_at"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert _aware_utc(user["updated_at"]) == created


async def test_get_user_returns_the_stored_user(
    client: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    other: Account = await make_user(email="grace@example.com", name="Grace")

    response = await client.get(f"/users/{other.id}")

    assert response.status_code == 200
    assert response.json() == other.user


async def test_get_me_returns_the_tokens_user(client: httpx.AsyncClient, me: Account) -> None:
    response = await client.get("/users/me")

    assert response.status_code == 200
    assert response.json() == me.user


async def test_get_missing_user_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/987654321")

    assert response.status_code == 404
    assert response.json() == {"detail": "user 987654321 not found"}


@pytest.mark.parametrize("email", ["dup@example.com", "DUP@example.com", "Dup@Example.Com"])
async def test_create_user_with_taken_email_returns_409(
    client: httpx.AsyncClient, make_user: Callable[..., Any], email: str
) -> None:
    await make_user(email="dup@example.com")

    response = await client.post("/users", json=_new_user(email, "Other"))

    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    listed = (await client.get("/users")).json()["items"]
    assert [u["email"] for u in listed].count("dup@example.com") == 1


async def test_create_user_with_display_name_in_email_returns_422(
    client: httpx.AsyncClient, me: Account
) -> None:
    response = await client.post("/users", json=_new_user("Ada <ada@example.com>", "A"))

    assert response.status_code == 422
    assert "bare email address" in response.json()["detail"][0]["msg"]
    assert (await client.get("/users")).json()["items"] == [me.user]


async def test_patch_user_changes_only_given_fields(client: httpx.AsyncClient, me: Account) -> None:
    response = await client.patch(f"/users/{me.id}", json={"name": "After"})

    assert response.status_code == 200
    changed = response.json()
    assert changed["name"] == "After"
    assert changed["email"] == me.user["email"]
    assert changed["created_at"] == me.user["created_at"]
    assert _aware_utc(changed["updated_at"]) >= _aware_utc(me.user["updated_at"])
    assert (await client.get(f"/users/{me.id}")).json() == changed


async def test_patch_user_changes_both_fields_at_once(
    client: httpx.AsyncClient, me: Account
) -> None:
    response = await client.patch(
        f"/users/{me.id}", json={"email": "New@Example.com", "name": " New "}
    )

    assert response.status_code == 200
    assert (response.json()["email"], response.json()["name"]) == ("new@example.com", "New")
    assert (await client.get(f"/users/{me.id}")).json() == response.json()


async def test_patch_user_with_no_fields_changes_nothing(
    client: httpx.AsyncClient, me: Account
) -> None:
    response = await client.patch(f"/users/{me.id}", json={})
    missing = await client.patch("/users/987654321", json={})

    assert response.status_code == 200
    assert response.json() == me.user
    assert missing.status_code == 404
    assert missing.json() == {"detail": "user 987654321 not found"}


async def test_patch_user_to_taken_email_returns_409(
    client: httpx.AsyncClient, make_user: Callable[..., Any], me: Account
) -> None:
    await make_user(email="taken@example.com")

    response = await client.patch(f"/users/{me.id}", json={"email": "TAKEN@example.com"})

    assert response.status_code == 409
    assert response.json() == {"detail": "a user with email taken@example.com already exists"}
    assert (await client.get(f"/users/{me.id}")).json() == me.user


async def test_patch_user_to_own_email_succeeds(client: httpx.AsyncClient, me: Account) -> None:
    response = await client.patch(f"/users/{me.id}", json={"email": me.user["email"].upper()})

    assert response.status_code == 200
    assert response.json()["email"] == me.user["email"]


async def test_patch_missing_user_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/users/987654321", json={"name": "X"})

    assert response.status_code == 404
    assert response.json() == {"detail": "user 987654321 not found"}


async def test_delete_user_returns_204_then_401(
    client: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    user: Account = await make_user()

    response = await client.delete(f"/users/{user.id}", headers=user.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/users/{user.id}")).json() == {"detail": f"user {user.id} not found"}
    # The token went with its user.
    again = await client.delete(f"/users/{user.id}", headers=user.headers)
    assert again.status_code == 401
    assert again.json() == {"detail": "invalid or expired token"}
    assert again.headers["www-authenticate"] == "Bearer"


async def test_list_users_walks_every_page_in_id_order(
    client: httpx.AsyncClient, make_user: Callable[..., Any], me: Account
) -> None:
    created = [me] + [await make_user(name=f"User {n}") for n in range(6)]

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/users", params=params)
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [u["id"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(account.id for account in created)
    assert pages == 3


async def test_list_users_defaults_to_50(
    client: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    for _ in range(50):  # and `me`
        await make_user()

    page = (await client.get("/users")).json()

    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    rest = (await client.get("/users", params={"cursor": page["next_cursor"]})).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def test_list_users_on_the_last_page_returns_no_cursor(
    client: httpx.AsyncClient, me: Account
) -> None:
    response = await client.get("/users")

    assert response.json() == {"items": [me.user], "next_cursor": None}
