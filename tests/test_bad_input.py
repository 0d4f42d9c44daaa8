"""Bad input answers 4xx with a readable `detail` and leaves the database as it was."""

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from service.schemas import MAX_ID
from tests.support.accounts import Account
from tests.support.bad_input import WRITES, World, assert_clear_4xx, make_world

JSON = {"content-type": "application/json"}


@pytest.fixture
async def world(client: httpx.AsyncClient, connection: AsyncConnection, me: Account) -> World:
    return await make_world(client, connection, me)


# --- ids ---------------------------------------------------------------------------------------

ID_ROUTES = [
    ("GET", "/users/{id}", None),
    ("PATCH", "/users/{id}", {"name": "New"}),
    ("DELETE", "/users/{id}", None),
    ("POST", "/users/{id}/items", {"title": "New"}),
    ("GET", "/users/{id}/items", None),
    ("GET", "/items/{id}", None),
    ("PATCH", "/items/{id}", {"title": "New"}),
    ("DELETE", "/items/{id}", None),
]
BAD_IDS = ["0", "-1", "abc", str(MAX_ID + 1), "99999999999999999999", "1.5", "%00"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_request_with_bad_id_returns_422(world: World, bad_id: str) -> None:
    before = await world.snapshot()

    for method, path, body in ID_ROUTES:
        what = f"{method} {path} id={bad_id!r}"
        response = await world.client.request(method, path.format(id=bad_id), json=body)

        errors = assert_clear_4xx(response, 422, what)
        assert [e["loc"][0] for e in errors] == ["path"], what

    assert await world.snapshot() == before


# --- string fields -------------------------------------------------------------------------------

TOO_LONG_EMAIL = "a" * 64 + "@" + ("b" * 63 + ".") * 4 + "com"
BAD_STRINGS = [
    # Postgres cannot store NUL; a lone surrogate is valid JSON but not valid Unicode.
    ("email", "a\x00b@example.com"),
    ("email", "\ud800@example.com"),
    ("email", TOO_LONG_EMAIL),
    ("email", "not-an-email"),
    ("email", "a@"),
    ("email", "@example.com"),
    ("email", "a b@example.com"),
    ("email", "   "),
    ("email", ""),
    ("name", "A\x00da"),
    ("name", "\ud800"),
    ("name", "x" * 101),
    ("name", "   "),
    ("name", "\t\n"),
    ("name", ""),
    ("title", "La\x00mp"),
    ("title", "Lamp\udfff"),
    ("title", "x" * 201),
    ("title", "   "),
    ("title", ""),
    ("description", "\x00"),
    ("description", "\ud800"),
    ("description", "x" * 10_001),
    ("password", "s3cr3t"),
    ("password", "x" * 129),
    ("password", "pass\x00word"),
    ("password", "pass\ud800word"),
]


def _short(value: str) -> str:
    return ascii(value) if len(value) < 20 else f"{len(value)}-chars"


@pytest.mark.parametrize(
    ("field", "value"), BAD_STRINGS, ids=[f"{f}={_short(v)}" for f, v in BAD_STRINGS]
)
async def test_write_with_bad_string_returns_422(world: World, field: str, value: str) -> None:
    before = await world.snapshot()

    for write in WRITES:
        if field not in write.body:
            continue
        what = f"{write} {field}={_short(value)}"
        # json.dumps escapes a lone surrogate as \ud800; httpx's json= cannot encode it.
        body = json.dumps({**write.body, field: value})
        response = await world.client.request(
            write.method, world.url(write.path), content=body, headers=JSON
        )

        errors = assert_clear_4xx(response, 422, what)
        assert [e["loc"] for e in errors] == [["body", field]], what
        if field == "password":  # never echoed, in whatever form
            assert value not in response.text, what
            assert json.dumps(value)[1:-1] not in response.text, what

    assert await world.snapshot() == before


# --- bodies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadBody:
    name: str
    content: Callable[[dict[str, Any]], bytes]  # from a body the endpoint accepts
    headers: dict[str, str]
    # 400: FastAPI's own, for a body it cannot even parse; 422 for one it parsed.
    status: int = 422


def _json(transform: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bytes]:
    return lambda body: json.dumps(transform(body)).encode()


def _raw(content: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda _body: content


BAD_BODIES = [
    BadBody("malformed-json", _raw(b'{"name": "x",'), JSON),
    BadBody("trailing-comma", _raw(b'{"name": "x",}'), JSON),
    BadBody("single-quotes", _raw(b"{'name': 'x'}"), JSON),
    BadBody("empty", _raw(b""), JSON),
    BadBody("array", _json(lambda body: [body]), JSON),
    BadBody("empty-array", _raw(b"[]"), JSON),
    BadBody("number", _raw(b"1"), JSON),
    BadBody("string", _raw(b'"x"'), JSON),
    BadBody("null", _raw(b"null"), JSON),
    BadBody("text-plain", _json(lambda body: body), {"content-type": "text/plain"}),
    BadBody("form", _raw(b"name=x"), {"content-type": "application/x-www-form-urlencoded"}),
    BadBody("no-content-type", _json(lambda body: body), {}),
    BadBody("unknown-field", _json(lambda body: {**body, "extra": 1}), JSON),
    BadBody("surrogate-field", _json(lambda body: {**body, "\ud800": 1}), JSON),
    BadBody("all-null", _json(lambda body: dict.fromkeys(body)), JSON),
    BadBody("all-numbers", _json(lambda body: dict.fromkeys(body, 1)), JSON),
    BadBody("all-booleans", _json(lambda body: dict.fromkeys(body, True)), JSON),
    BadBody("all-lists", _json(lambda body: {key: ["x"] for key in body}), JSON),
    BadBody("all-objects", _json(lambda body: {key: {"x": 1} for key in body}), JSON),
    # Python's JSON parser accepts NaN and Infinity, which JSON output may not hold.
    BadBody("all-nan", _json(lambda body: dict.fromkeys(body, float("nan"))), JSON),
    BadBody("all-infinity", _json(lambda body: dict.fromkeys(body, float("-inf"))), JSON),
    BadBody("latin1-text", _raw(b"name=\xff\xfe"), {"content-type": "text/plain"}),
    BadBody("latin1-json", _raw(b'{"name": "\xff"}'), JSON, status=400),
    BadBody("deep-json", _raw(b"[" * 100_000), JSON, status=400),
    BadBody("huge-number", _raw(b'{"name": 1' + b"0" * 5000 + b"}"), JSON, status=400),
]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=[b.name for b in BAD_BODIES])
async def test_write_with_bad_body_returns_4xx(world: World, bad: BadBody) -> None:
    before = await world.snapshot()

    for write in WRITES:
        what = f"{write} {bad.name}"
        response = await world.client.request(
            write.method,
            world.url(write.path),
            content=bad.content(write.body),
            headers=bad.headers,
        )

        assert_clear_4xx(response, bad.status, what)

    assert await world.snapshot() == before


# --- paging --------------------------------------------------------------------------------------


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


BAD_PAGING = [
    ("limit", "0"),
    ("limit", "101"),
    ("limit", "-1"),
    ("limit", "x"),
    ("limit", "1.5"),
    ("limit", ""),
    ("cursor", "!!!"),
    ("cursor", ""),
    ("cursor", base64.b64encode(random.Random(0).randbytes(48)).decode()),
    ("cursor", "A" * 10_000),
    ("cursor", "\x00"),
    ("cursor", _cursor({"after": "1"})),
    ("cursor", _cursor({"after": 1.5})),
    ("cursor", _cursor({"after": True})),
    ("cursor", _cursor({"after": None})),
    ("cursor", _cursor({"after": -1})),
    ("cursor", _cursor({"after": MAX_ID + 1})),
    ("cursor", _cursor({"before": 1})),
    ("cursor", _cursor([1])),
    ("cursor", _cursor(1)),
    ("cursor", _cursor(None)),
]


@pytest.mark.parametrize(
    ("param", "value"), BAD_PAGING, ids=[f"{p}={_short(v)}" for p, v in BAD_PAGING]
)
async def test_list_with_bad_paging_returns_422(world: World, param: str, value: str) -> None:
    for path in ("/users", "/users/{user}/items"):
        what = f"GET {path}?{param}={_short(value)}"
        response = await world.client.get(world.url(path), params={param: value})

        errors = assert_clear_4xx(response, 422, what)
        assert [e["loc"] for e in errors] == [["query", param]], what
