"""A client generated from /openapi.json (openapi-python-client), as a user of the API makes
one: every answer it meets is documented, so it parses each into its typed model."""

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests.support.accounts import PASSWORD
from tests.support.app import app_for

PACKAGE = "service_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The client package, generated from the app's schema, imported."""
    where = tmp_path_factory.mktemp("generated")
    (where / "openapi.json").write_text(json.dumps(app_for(make_url("sqlite://")).openapi()))
    (where / "config.yml").write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    subprocess.run(
        [
            Path(sys.executable).with_name("openapi-python-client"), "generate",
            "--path", "openapi.json", "--config", "config.yml", "--meta", "none",
            "--output-path", PACKAGE,
        ],
        cwd=where, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sys.path.insert(0, str(where))
    modules = {
        name: importlib.import_module(f"{PACKAGE}.{path}") for name, path in _MODULES.items()
    }
    yield SimpleNamespace(**modules)
    sys.path.remove(str(where))


# What the test calls, by the names the generator gave them.
_MODULES = {
    "client": "client",
    "UserCreate": "models.user_create",
    "ItemCreate": "models.item_create",
    "LoginForm": "models.login_form",
    "sign_up": "api.users.create_user_users_post",
    "log_in": "api.auth.log_in_auth_token_post",
    "create_item": "api.items.create_item_users_user_id_items_post",
    "list_items": "api.items.list_items_users_user_id_items_get",
    "get_item": "api.items.get_item_items_item_id_get",
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": 2}


def _client(generated: Any, app: FastAPI, token: str | None = None) -> Any:
    transport = {"transport": httpx.ASGITransport(app=app)}
    if token is None:
        return generated.client.Client(base_url="http://test", httpx_args=transport)
    return generated.client.AuthenticatedClient(
        base_url="http://test", token=token, httpx_args=transport
    )


async def test_generated_client_signs_up_logs_in_creates_pages_and_meets_413_and_429(
    generated: Any, app: FastAPI
) -> None:
    anonymous = _client(generated, app)
    email = "gen@example.com"

    signed_up = await generated.sign_up.asyncio_detailed(
        client=anonymous,
        body=generated.UserCreate.UserCreate(email=email, name="Gen", password=PASSWORD),
    )
    assert signed_up.status_code == 201
    user = signed_up.parsed
    assert signed_up.headers["location"] == f"/users/{user.id}"

    form = generated.LoginForm.LoginForm(username=email, password=PASSWORD)
    logged_in = await generated.log_in.asyncio_detailed(client=anonymous, body=form)
    assert logged_in.status_code == 200
    me = _client(generated, app, logged_in.parsed.access_token)

    ids = []
    for title in ("one", "two", "three"):
        created = await generated.create_item.asyncio_detailed(
            user.id, client=me, body=generated.ItemCreate.ItemCreate(title=title)
        )
        assert created.status_code == 201
        assert created.headers["location"] == f"/items/{created.parsed.id}"
        assert created.headers["etag"]
        ids.append(created.parsed.id)
    listed, cursor = [], None
    while True:
        page = await generated.list_items.asyncio_detailed(
            user.id, client=me, limit=2, **({"cursor": cursor} if cursor else {})
        )
        assert page.status_code == 200
        listed += [item.id for item in page.parsed.items]
        cursor = page.parsed.next_cursor
        if not cursor:
            break
    assert listed == ids
    fetched = await generated.get_item.asyncio_detailed(ids[0], client=me)
    assert fetched.parsed.title == "one"

    too_large = await generated.create_item.asyncio_detailed(
        user.id, client=me, body=generated.ItemCreate.ItemCreate(title="x" * (2 * 1024 * 1024))
    )
    assert too_large.status_code == 413
    assert "MAX_BODY_BYTES" in too_large.parsed.detail

    wrong = generated.LoginForm.LoginForm(username=email, password="not the password")
    answers = [
        await generated.log_in.asyncio_detailed(client=anonymous, body=wrong) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert int(answers[-1].headers["retry-after"]) > 0
    assert answers[-1].parsed.detail.startswith("too many failed logins")
