"""Errors: a 500 is answered and logged once; 503 only for the database; 405 names every
method; routes document what they answer."""

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL

from service.api.deps import SessionDep
from service.errors import ServiceError
from tests.support.accounts import Account
from tests.support.app import serve

router = APIRouter()


@router.get("/bug")
async def bug() -> None:
    raise ZeroDivisionError("a bug")


@router.get("/missing-file")
def missing_file() -> str:
    return Path("/nonexistent/file.txt").read_text()  # an OSError, not the database's


@router.get("/bad-sql")
async def bad_sql(session: SessionDep) -> None:
    await session.execute(text("SELECT no_such_function()"))


@pytest.fixture
async def buggy_client(migrated_url: URL) -> AsyncIterator[httpx.AsyncClient]:
    # An exception re-raised to the server, which would log it a second time, fails the
    # request here (see client_of).
    async with serve(migrated_url, router) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "error"),
    [("/bug", "ZeroDivisionError"), ("/missing-file", "FileNotFoundError"), ("/bad-sql", "")],
)
async def test_unexpected_error_answers_500_and_logs_one_traceback(
    buggy_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str, error: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = await buggy_client.get(path)

    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "request_id": request_id}
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert f"GET {path} failed" in tracebacks[0].getMessage()
    assert error in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/users", "GET, POST"),
        ("PUT", "/users/1", "DELETE, GET, PATCH"),
        ("PUT", "/users/abc", "DELETE, GET, PATCH"),  # GET /users/abc: 422, a clear 4xx
        # /users/me is a resource of its own: /users/{user_id}'s methods cannot succeed there.
        ("PUT", "/users/me", "GET"),
        ("PATCH", "/users/me", "GET"),
        ("DELETE", "/users/me", "GET"),
        ("OPTIONS", "/items/1", "DELETE, GET, PATCH"),
        ("DELETE", "/users/1/items", "GET, POST"),
        ("POST", "/health", "GET"),
        ("POST", "/openapi.json", "GET, HEAD"),
    ],
)
async def test_wrong_method_answers_405_naming_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == {"detail": "Method Not Allowed"}


async def test_wrong_method_at_users_me_is_405_token_or_not(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.patch("/users/me", json={"name": "X"})
    by_id = await anonymous.patch("/users/abc", json={"name": "X"})

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == {"detail": "Method Not Allowed"}
    assert by_id.status_code == 401  # an id that is not a number: 401 first, then 422
    assert by_id.json() == {"detail": "Not authenticated"}
    assert by_id.headers["www-authenticate"] == "Bearer"


async def test_no_content_answers_carry_no_content_type(
    client: httpx.AsyncClient, me: Account, make_user: Callable[..., Any]
) -> None:
    other: Account = await make_user()
    item = (await client.post(f"/users/{me.id}/items", json={"title": "T"})).json()
    answers = [
        await client.delete(f"/items/{item['id']}"),
        await client.delete(f"/users/{other.id}", headers=other.headers),
        await client.delete("/auth/token"),
    ]

    assert [r.status_code for r in answers] == [204, 204, 204]
    for response in answers:
        assert response.content == b""
        assert "content-type" not in response.headers


def test_openapi_documents_the_errors_of_every_route(app: FastAPI) -> None:
    """Each route's error responses come from the error classes it raises: a signed-in route
    documents 401, one with a path, query or body 422, every one 400 and 503, each with its
    class's words."""
    described = {e.status_code: e.__doc__ for e in ServiceError.__subclasses__()}
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) >= 15
    for name, operation in operations:
        statuses = {int(status) for status in operation["responses"]}
        if "security" in operation:
            assert 401 in statuses, name
        validated = [p for p in operation.get("parameters", ()) if p["in"] in ("path", "query")]
        if validated or "requestBody" in operation:
            assert 422 in statuses, name
        assert {400, 503} <= statuses, name
        for status in statuses & described.keys():
            assert operation["responses"][str(status)]["description"] == described[status], name


async def test_login_needs_a_username_and_a_password_the_schema_says_so(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    empty = await anonymous.post("/auth/token", data={"username": "", "password": ""})

    assert empty.status_code == 422
    assert {tuple(e["loc"]) for e in empty.json()["detail"]} == {
        ("body", "username"),
        ("body", "password"),
    }
    form = app.openapi()["components"]["schemas"]["LoginForm"]["properties"]
    assert form["username"]["minLength"] == form["password"]["minLength"] == 1
