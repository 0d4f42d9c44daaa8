"""Accounts and access: sign-up, login, tokens, ownership, the order of checks, the login lock."""

import asyncio
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from service.models import AccessToken, LoginFailure, User
from tests.support.accounts import PASSWORD, Account, log_in, sign_up
from tests.support.app import serve
from tests.support.bad_input import assert_clear_4xx

TTL, MAX_FAILURES, WINDOW = 123, 3, 900
WRONG = {"detail": "incorrect email or password"}
NO_TOKEN = {"detail": "Not authenticated"}
BAD_TOKEN = {"detail": "invalid or expired token"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ACCESS_TOKEN_TTL": TTL, "LOGIN_MAX_FAILURES": MAX_FAILURES, "LOGIN_WINDOW": WINDOW}


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


def _assert_401(response: httpx.Response, body: dict[str, str] = BAD_TOKEN) -> None:
    """Refused for want of a valid token, as the client is told: 401, why, and how to sign in."""
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers["www-authenticate"] == "Bearer"


def _assert_logged_in(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    login = response.json()
    assert (login["token_type"], login["expires_in"]) == ("bearer", TTL)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", login["access_token"])


# --- sign-up, login, tokens ------------------------------------------------------------------


async def test_sign_up_and_log_in_gives_a_bearer_token_for_the_user(
    anonymous: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    created = await anonymous.post(
        "/users", json={"email": "Ann@Example.com", "name": "Ann", "password": PASSWORD}
    )
    login = await _login(anonymous, "ANN@example.COM", PASSWORD)
    token = login.json()["access_token"]
    me = await anonymous.get("/users/me", headers={"Authorization": f"Bearer {token}"})

    assert created.status_code == 201
    assert "password" not in created.text
    assert login.status_code == 200
    assert login.json() == {"access_token": token, "token_type": "bearer", "expires_in": TTL}
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)
    assert me.json() == created.json()
    # Stored: an Argon2id hash of the password, the SHA-256 of the token, never either itself.
    stored_hash = await connection.scalar(select(User.password_hash))
    token_rows = (await connection.execute(select(AccessToken))).all()
    assert stored_hash is not None
    assert stored_hash.startswith("$argon2id$")
    assert PASSWORD not in stored_hash
    assert [row.token_hash for row in token_rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(token_rows)
    (row,) = token_rows
    assert row.expires_at - row.created_at == timedelta(seconds=TTL)


async def test_wrong_password_and_unknown_email_get_the_same_401(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any], connection: AsyncConnection
) -> None:
    await make_user(email="known@example.com")
    await connection.execute(insert(User).values(email="legacy@example.com", name="No password"))
    tokens = select(func.count()).select_from(AccessToken)
    tokens_before = await connection.scalar(tokens)

    answers = [
        await _login(anonymous, "known@example.com", "not the password"),
        await _login(anonymous, "unknown@example.com", PASSWORD),
        await _login(anonymous, "legacy@example.com", PASSWORD),  # made before passwords
        await _login(anonymous, "x" * 400, PASSWORD),
    ]

    for response in answers:
        _assert_401(response, WRONG)
    assert await connection.scalar(tokens) == tokens_before


PROTECTED = [
    ("GET", "/users/me"),
    ("GET", "/users"),
    ("GET", "/users/{me}"),
    ("PATCH", "/users/{me}"),
    ("DELETE", "/users/{me}"),
    ("POST", "/users/{me}/items"),
    ("GET", "/users/{me}/items"),
    ("GET", "/items/{item}"),
    ("PATCH", "/items/{item}"),
    ("DELETE", "/items/{item}"),
    ("DELETE", "/auth/token"),
]
# Each with what the client is told.
BAD_CREDENTIALS = {
    "none": ({}, NO_TOKEN),
    "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, NO_TOKEN),
    "empty bearer": ({"Authorization": "Bearer "}, BAD_TOKEN),
    "malformed": ({"Authorization": "Bearer not a token!"}, BAD_TOKEN),
    "unknown": ({"Authorization": f"Bearer {'A' * 43}"}, BAD_TOKEN),
}


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS, ids=list(BAD_CREDENTIALS))
async def test_protected_route_without_a_valid_token_gets_401(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, me: Account, credentials: str
) -> None:
    item = (await client.post(f"/users/{me.id}/items", json={"title": "T"})).json()
    headers, answer = BAD_CREDENTIALS[credentials]

    for method, path in PROTECTED:
        url = path.format(me=me.id, item=item["id"])
        body = {"title": "X"} if method in {"POST", "PATCH"} else None
        response = await anonymous.request(method, url, json=body, headers=headers)

        _assert_401(response, answer)
    assert (await client.get(f"/items/{item['id']}")).json() == item  # nothing changed


async def test_public_routes_need_no_token(anonymous: httpx.AsyncClient) -> None:
    # /health too: tests/test_health.py reads it without a token.
    for path in ("/health/live", "/docs", "/docs/oauth2-redirect", "/redoc"):
        assert (await anonymous.get(path)).status_code == 200, path
    schema = (await anonymous.get("/openapi.json")).json()
    created = await anonymous.post(
        "/users", json={"email": "pub@example.com", "name": "P", "password": PASSWORD}
    )

    assert created.status_code == 201
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/auth/token"
    assert "security" not in schema["paths"]["/users"]["post"]
    assert "security" in schema["paths"]["/users"]["get"]


@pytest.mark.parametrize("credentials", [{}, {"Authorization": f"Bearer {'A' * 43}"}])
async def test_unknown_path_is_404_with_or_without_a_token(
    anonymous: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    response = await anonymous.get("/no/such/path", headers=credentials)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_expired_token_gets_401(
    client: httpx.AsyncClient, me: Account, connection: AsyncConnection
) -> None:
    assert (await client.get("/users/me")).status_code == 200
    past = datetime.now(UTC) - timedelta(seconds=1)
    await connection.execute(update(AccessToken).values(expires_at=past))

    response = await client.get("/users/me")

    _assert_401(response)


async def test_logout_revokes_only_the_token_it_is_sent_with(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    await make_user(email="two@example.com")
    first, second = [
        {"Authorization": f"Bearer {await log_in(anonymous, 'two@example.com')}"} for _ in range(2)
    ]

    logout = await anonymous.delete("/auth/token", headers=first)

    assert (logout.status_code, logout.content) == (204, b"")
    _assert_401(await anonymous.get("/users/me", headers=first))
    _assert_401(await anonymous.delete("/auth/token", headers=first))
    assert (await anonymous.get("/users/me", headers=second)).json()["email"] == "two@example.com"


async def test_password_change_revokes_the_users_other_tokens(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    user: Account = await make_user(email="pw@example.com")
    other = {"Authorization": f"Bearer {await log_in(anonymous, 'pw@example.com')}"}

    changed = await anonymous.patch(
        f"/users/{user.id}", json={"password": "a whole new one"}, headers=user.headers
    )

    assert changed.status_code == 200
    assert "password" not in changed.text
    _assert_401(await anonymous.get("/users/me", headers=other))
    assert (await anonymous.get("/users/me", headers=user.headers)).json() == changed.json()
    _assert_401(await _login(anonymous, "pw@example.com", PASSWORD), WRONG)
    _assert_logged_in(await _login(anonymous, "pw@example.com", "a whole new one"))


async def test_deleting_a_user_revokes_all_their_tokens(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any], connection: AsyncConnection
) -> None:
    user: Account = await make_user(email="gone@example.com")
    other = {"Authorization": f"Bearer {await log_in(anonymous, 'gone@example.com')}"}

    deleted = await anonymous.delete(f"/users/{user.id}", headers=user.headers)

    assert (deleted.status_code, deleted.content) == (204, b"")
    _assert_401(await anonymous.get("/users/me", headers=user.headers))
    _assert_401(await anonymous.get("/users/me", headers=other))
    assert await connection.scalar(select(func.count()).select_from(AccessToken)) == 0


# --- ownership and the order of checks: 401, 422, 404, 403, 409 ------------------------------


async def test_only_the_owner_changes_a_user_or_their_items_but_everyone_reads(
    client: httpx.AsyncClient, make_user: Callable[..., Any], me: Account
) -> None:
    other: Account = await make_user(email="other@example.com")
    theirs = (
        await client.post(f"/users/{other.id}/items", json={"title": "T"}, headers=other.headers)
    ).json()

    refused = [
        await client.patch(f"/users/{other.id}", json={"name": "Mine now"}),
        await client.delete(f"/users/{other.id}"),
        await client.post(f"/users/{other.id}/items", json={"title": "Planted"}),
        await client.patch(f"/items/{theirs['id']}", json={"title": "Mine now"}),
        await client.delete(f"/items/{theirs['id']}"),
        await client.patch(f"/items/{theirs['id']}", json={}),
    ]
    reads = [
        await client.get(f"/users/{other.id}"),
        await client.get(f"/users/{other.id}/items"),
        await client.get(f"/items/{theirs['id']}"),
    ]

    for response in refused:
        assert response.status_code == 403, response.text
        assert isinstance(response.json()["detail"], str)
    assert [r.status_code for r in reads] == [200, 200, 200]
    assert reads[0].json() == other.user
    assert reads[2].json() == theirs
    assert reads[1].json()["items"] == [theirs]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "authorised", "status"),
    [
        ("401 before 422 (id)", "PATCH", "/users/abc", {"name": "X"}, False, 401),
        ("401 before 422 (body)", "PATCH", "/users/{me}", {"name": ""}, False, 401),
        ("401 before 422 (query)", "GET", "/users?limit=0", None, False, 401),
        ("401 before 404", "GET", "/users/987654321", None, False, 401),
        ("422 before 404 (id)", "PATCH", "/users/0", {"name": "X"}, True, 422),
        ("422 before 404 (body)", "PATCH", "/users/987654321", {"name": ""}, True, 422),
        ("422 before 403", "PATCH", "/users/{other}", {"email": "nope"}, True, 422),
        ("404 before 403", "PATCH", "/users/987654321", {"name": "X"}, True, 404),
        ("404 before 403 (item)", "DELETE", "/items/987654321", None, True, 404),
        ("404 before 403 (items of)", "POST", "/users/987654321/items", {"title": "T"}, True, 404),
        ("403 before 409", "PATCH", "/users/{other}", {"email": "me@example.com"}, True, 403),
        ("409", "PATCH", "/users/{me}", {"email": "other@example.com"}, True, 409),
    ],
)
async def test_checks_come_in_contract_order(
    anonymous: httpx.AsyncClient,
    make_user: Callable[..., Any],
    me: Account,
    name: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    authorised: bool,
    status: int,
) -> None:
    other: Account = await make_user(email="other@example.com")

    response = await anonymous.request(
        method,
        path.format(me=me.id, other=other.id),
        json=body,
        headers=me.headers if authorised else {},
    )

    assert_clear_4xx(response, status, name)


# --- the login lock --------------------------------------------------------------------------


async def _shift_failures_back(connection: AsyncConnection, seconds: float) -> None:
    """Make the recorded failures older, as if `seconds` had passed."""
    rows = (await connection.execute(select(LoginFailure))).all()
    for row in rows:
        older = row.failed_at - timedelta(seconds=seconds)
        await connection.execute(
            update(LoginFailure).where(LoginFailure.id == row.id).values(failed_at=older)
        )


async def test_too_many_failures_lock_the_email_whatever_the_password(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any], connection: AsyncConnection
) -> None:
    await make_user(email="lock@example.com")
    await make_user(email="free@example.com")

    failures = [await _login(anonymous, "LOCK@example.com", "wrong") for _ in range(MAX_FAILURES)]
    locked = [await _login(anonymous, "lock@example.com", p) for p in ("wrong", PASSWORD)]
    elsewhere = await _login(anonymous, "free@example.com", PASSWORD)

    for response in failures:
        _assert_401(response, WRONG)
    for response in locked:
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= WINDOW
        assert "too many failed logins" in response.json()["detail"]
    _assert_logged_in(elsewhere)
    # Locked answers were not counted: once the window after the locking failure has passed,
    # the right password works again.
    await _shift_failures_back(connection, WINDOW + 1)
    _assert_logged_in(await _login(anonymous, "lock@example.com", PASSWORD))


async def test_unknown_email_locks_too(anonymous: httpx.AsyncClient) -> None:
    answers = [await _login(anonymous, "nobody@example.com", "x") for _ in range(MAX_FAILURES + 1)]

    assert [r.status_code for r in answers] == [401] * MAX_FAILURES + [429]
    assert answers[-1].json() == {
        "detail": f"too many failed logins; try again in {answers[-1].headers['retry-after']} s"
    }


async def test_lock_lasts_one_window_from_the_failure_that_set_it(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any], connection: AsyncConnection
) -> None:
    await make_user(email="slide@example.com")
    await _login(anonymous, "slide@example.com", "wrong")
    await _shift_failures_back(connection, WINDOW - 100)  # the first failure, long ago
    for _ in range(MAX_FAILURES - 1):
        await _login(anonymous, "slide@example.com", "wrong")  # the last one locks

    locked = await _login(anonymous, "slide@example.com", PASSWORD)
    # Later the first failure has left the window, but the lock runs from the last one.
    await _shift_failures_back(connection, 200)
    still_locked = await _login(anonymous, "slide@example.com", PASSWORD)
    await _shift_failures_back(connection, WINDOW - 200)
    free = await _login(anonymous, "slide@example.com", PASSWORD)

    assert locked.status_code == 429
    assert WINDOW - 5 <= int(locked.headers["retry-after"]) <= WINDOW
    assert still_locked.status_code == 429
    assert int(still_locked.headers["retry-after"]) <= WINDOW - 200
    _assert_logged_in(free)


async def test_failures_spread_wider_than_the_window_do_not_lock(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any], connection: AsyncConnection
) -> None:
    await make_user(email="spread@example.com")
    for _ in range(MAX_FAILURES - 1):
        await _login(anonymous, "spread@example.com", "wrong")
    await _shift_failures_back(connection, WINDOW + 1)
    for _ in range(MAX_FAILURES - 1):
        await _login(anonymous, "spread@example.com", "wrong")

    _assert_logged_in(await _login(anonymous, "spread@example.com", PASSWORD))


async def test_successful_login_resets_the_count(
    anonymous: httpx.AsyncClient, make_user: Callable[..., Any]
) -> None:
    await make_user(email="reset@example.com")
    statuses = []
    for password in ["wrong"] * (MAX_FAILURES - 1) + [PASSWORD] + ["wrong"] * MAX_FAILURES:
        statuses.append((await _login(anonymous, "reset@example.com", password)).status_code)

    assert statuses == [401] * (MAX_FAILURES - 1) + [200] + [401] * MAX_FAILURES
    locked = await _login(anonymous, "reset@example.com", PASSWORD)
    assert locked.status_code == 429
    assert "too many failed logins" in locked.json()["detail"]


async def test_two_logins_racing_the_threshold_do_not_both_get_through(
    migrated_url: URL,
) -> None:
    async with serve(migrated_url, LOGIN_MAX_FAILURES=2) as client:
        await sign_up(client, "race@example.com")
        first = await _login(client, "race@example.com", "wrong")
        racing = await asyncio.gather(
            _login(client, "race@example.com", PASSWORD),
            _login(client, "race@example.com", "wrong"),
        )

    assert first.status_code == 401
    # Attempts for one email take turns, so the outcome is one of the two orders: the right
    # password first (the count starts again, the wrong one is then checked), or the wrong
    # one first (it makes the count, and the right one finds the email locked).
    assert sorted(r.status_code for r in racing) in ([200, 401], [401, 429])


async def test_password_hashing_does_not_block_the_event_loop(migrated_url: URL) -> None:
    async with serve(migrated_url) as client:
        await sign_up(client, "slow@example.com")
        login = asyncio.create_task(_login(client, "slow@example.com", PASSWORD))
        await asyncio.sleep(0)  # the login starts, and hashes in a worker thread
        live = await client.get("/health/live")
        still_hashing = not login.done()
        assert (await login).json()["token_type"] == "bearer"

    assert live.json() == {"status": "ok"}
    assert still_hashing
