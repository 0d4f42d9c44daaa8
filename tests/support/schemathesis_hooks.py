"""Schemathesis hooks for tests/test_schemathesis.py (SCHEMATHESIS_HOOKS): a client that uses
the API as its documentation says. Each token is a new user's, so a case that deletes its user
or revokes its token leaves the next ones signed in; each create gets a new Idempotency-Key, as
a client sends one (the same key with another body is a 422 by design)."""

import os
import uuid
from typing import Any

import requests
import schemathesis

BASE_URL = os.environ["SCHEMATHESIS_BASE_URL"]
PASSWORD = "schemathesis password"


@schemathesis.auth(refresh_interval=2)
class NewUser:
    def get(self, case: Any, ctx: Any) -> str:
        email = f"st-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "name": "Schemathesis", "password": PASSWORD}
        requests.post(f"{BASE_URL}/users", json=body, timeout=30)
        login = requests.post(
            f"{BASE_URL}/auth/token", data={"username": email, "password": PASSWORD}, timeout=30
        )
        token: str = login.json()["access_token"]
        return token

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
