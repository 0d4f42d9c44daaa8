"""Accounts as a new user makes them: sign-up and login through the API."""

from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery"


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
