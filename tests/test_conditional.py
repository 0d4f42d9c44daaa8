"""Conditional requests (RFC 9110 §13): ETags, If-None-Match on reads, If-Match on writes, and
two writers that read the same version: only one of them wins."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.engine import URL

from service.api.conditional import if_match, read_one
from service.api.idempotency import creation
from service.main import ROUTERS
from tests.support.accounts import Account, sign_up
from tests.support.app import serve

ONE_RESOURCE = ["/users/{me}", "/items/{item}"]
CHANGES = {"/users/{me}": {"name": "Renamed"}, "/items/{item}": {"title": "Retitled"}}


@pytest.fixture
async def item(client: httpx.AsyncClient, me: Account) -> dict[str, Any]:
    created = await client.post(f"/users/{me.id}/items", json={"title": "Lamp"})
    assert created.status_code == 201, created.text
    item: dict[str, Any] = created.json()
    return item


@pytest.fixture
def url_of(me: Account, item: dict[str, Any]) -> Callable[[str], str]:
    return lambda path: path.format(me=me.id, item=item["id"])


def _is_strong_etag(tag: str) -> bool:
    return tag.startswith('"') and tag.endswith('"') and len(tag) > 2


@pytest.mark.parametrize("path", ONE_RESOURCE)
async def test_get_post_and_patch_answer_with_an_etag_that_every_change_moves(
    client: httpx.AsyncClient, url_of: Callable[[str], str], path: str
) -> None:
    first = await client.get(url_of(path))
    changed = await client.patch(url_of(path), json=CHANGES[path])
    read_again = await client.get(url_of(path))

    assert _is_strong_etag(first.headers["etag"])
    assert changed.headers["etag"] != first.headers["etag"]
    assert read_again.headers["etag"] == changed.headers["etag"]
    assert read_again.json() == changed.json()


async def test_created_resources_and_me_carry_their_etag(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, me: Account
) -> None:
    item = await client.post(f"/users/{me.id}/items", json={"title": "T"})
    user = await anonymous.post(
        "/users", json={"email": "new@example.com", "name": "New", "password": "a long secret"}
    )
    own = await client.get("/users/me")

    for created in (item, user):
        assert created.status_code == 201
        assert _is_strong_etag(created.headers["etag"])
        fetched = await client.get(created.headers["location"])
        assert fetched.headers["etag"] == created.headers["etag"]
    assert own.headers["etag"] == (await client.get(f"/users/{me.id}")).headers["etag"]


@pytest.mark.parametrize("path", [*ONE_RESOURCE, "/users/me"])
async def test_get_with_the_current_etag_answers_304_without_a_body(
    client: httpx.AsyncClient, url_of: Callable[[str], str], path: str
) -> None:
    tag = (await client.get(url_of(path))).headers["etag"]

    for if_none_match in (tag, f"W/{tag}", f'"0", {tag}', "*"):
        response = await client.get(url_of(path), headers={"If-None-Match": if_none_match})
        assert response.status_code == 304, if_none_match
        assert response.content == b""
        assert response.headers["etag"] == tag
    stale = await client.get(url_of(path), headers={"If-None-Match": '"0"'})
    assert stale.status_code == 200
    assert stale.json()["id"]


@pytest.mark.parametrize("path", ONE_RESOURCE)
async def test_patch_with_a_stale_etag_answers_412_with_the_current_one_and_changes_nothing(
    client: httpx.AsyncClient, url_of: Callable[[str], str], path: str
) -> None:
    before = await client.get(url_of(path))
    stale = before.headers["etag"]
    assert (await client.patch(url_of(path), json=CHANGES[path])).status_code == 200
    now = await client.get(url_of(path))

    refused = await client.patch(url_of(path), json={"title": "Lost"} if "items" in path else {
        "name": "Lost"
    }, headers={"If-Match": stale})  # fmt: skip

    assert refused.status_code == 412
    assert refused.headers["etag"] == now.headers["etag"]
    assert isinstance(refused.json()["detail"], str)
    assert (await client.get(url_of(path))).json() == now.json()


@pytest.mark.parametrize("path", ONE_RESOURCE)
async def test_patch_with_the_current_etag_or_a_star_succeeds(
    client: httpx.AsyncClient, url_of: Callable[[str], str], path: str
) -> None:
    tag = (await client.get(url_of(path))).headers["etag"]

    current = await client.patch(url_of(path), json=CHANGES[path], headers={"If-Match": tag})
    star = await client.patch(url_of(path), json=CHANGES[path], headers={"If-Match": "*"})
    among = await client.patch(
        url_of(path), json=CHANGES[path], headers={"If-Match": f'"0", {star.headers["etag"]}'}
    )

    assert [r.status_code for r in (current, star, among)] == [200, 200, 200]


async def test_delete_with_a_stale_etag_answers_412_and_deletes_nothing(
    client: httpx.AsyncClient, item: dict[str, Any]
) -> None:
    path = f"/items/{item['id']}"
    stale = (await client.get(path)).headers["etag"]
    await client.patch(path, json={"title": "Moved on"})

    refused = await client.delete(path, headers={"If-Match": stale})
    weak = await client.delete(path, headers={"If-Match": f"W/{refused.headers['etag']}"})
    deleted = await client.delete(path, headers={"If-Match": refused.headers["etag"]})

    assert refused.status_code == 412
    assert weak.status_code == 412  # If-Match compares strongly: a weak tag never matches
    assert deleted.status_code == 204
    assert (await client.get(path)).status_code == 404


async def test_conditions_come_after_401_404_and_403(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_user: Callable[..., Any],
    item: dict[str, Any],
) -> None:
    other: Account = await make_user()
    stale = {"If-Match": '"0"'}

    unauthenticated = await anonymous.patch(f"/items/{item['id']}", json={}, headers=stale)
    missing = await client.patch("/items/987654321", json={"title": "X"}, headers=stale)
    not_yours = await client.patch(f"/users/{other.id}", json={"name": "X"}, headers=stale)

    assert [r.status_code for r in (unauthenticated, missing, not_yours)] == [401, 404, 403]


async def test_empty_patch_with_a_stale_etag_is_refused_too(
    client: httpx.AsyncClient, item: dict[str, Any]
) -> None:
    response = await client.patch(f"/items/{item['id']}", json={}, headers={"If-Match": '"0"'})

    assert response.status_code == 412


async def test_version_is_not_a_field_clients_write(
    client: httpx.AsyncClient, item: dict[str, Any]
) -> None:
    response = await client.patch(f"/items/{item['id']}", json={"version": 99})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "version"]


class TestRequired:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"REQUIRE_IF_MATCH": True}

    @pytest.mark.parametrize("method", ["PATCH", "DELETE"])
    @pytest.mark.parametrize("path", ONE_RESOURCE)
    async def test_write_without_if_match_answers_428(
        self, client: httpx.AsyncClient, url_of: Callable[[str], str], method: str, path: str
    ) -> None:
        body = CHANGES[path] if method == "PATCH" else None

        refused = await client.request(method, url_of(path), json=body)
        tag = (await client.get(url_of(path))).headers["etag"]
        allowed = await client.request(method, url_of(path), json=body, headers={"If-Match": tag})

        assert refused.status_code == 428
        assert isinstance(refused.json()["detail"], str)
        assert allowed.status_code < 300

    async def test_creates_and_reads_need_no_if_match(
        self, client: httpx.AsyncClient, me: Account, app: FastAPI
    ) -> None:
        assert (await client.post(f"/users/{me.id}/items", json={"title": "T"})).status_code == 201
        assert (await client.get(f"/users/{me.id}")).status_code == 200


async def test_two_writers_sending_the_same_etag_cannot_both_win(migrated_url: URL) -> None:
    async with serve(migrated_url) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        item = await client.post(f"/users/{me.id}/items", json={"title": "T"})
        tag = item.headers["etag"]
        path = item.headers["location"]

        for _ in range(5):  # a race can hide; the version decides every time
            answers = await asyncio.gather(
                *(
                    client.patch(path, json={"title": f"by {n}"}, headers={"If-Match": tag})
                    for n in range(2)
                )
            )
            assert sorted(r.status_code for r in answers) == [200, 412]
            (won,) = [r for r in answers if r.status_code == 200]
            (lost,) = [r for r in answers if r.status_code == 412]
            assert lost.headers["etag"] == won.headers["etag"]
            assert (await client.get(path)).json() == won.json()
            tag = won.headers["etag"]


WRITERS = 20


async def test_writers_that_retry_on_412_lose_no_update(
    migrated_url: URL, record_property: Callable[[str, object], None]
) -> None:
    """Each of many clients reads the item, then writes back a change computed from what it
    read, with If-Match, reading again after each 412: every change is in the final state."""
    async with serve(migrated_url) as client:
        me = await sign_up(client, "me@example.com")
        client.headers.update(me.headers)
        created = await client.post(f"/users/{me.id}/items", json={"title": "T", "description": ""})
        path = created.headers["location"]
        refusals: list[tuple[str, str]] = []

        async def add_my_mark(writer: int) -> None:
            while True:
                read = await client.get(path)
                marks = read.json()["description"]
                changed = await client.patch(
                    path,
                    json={"description": f"{marks}[{writer}]"},
                    headers={"If-Match": read.headers["etag"]},
                )
                if changed.status_code == 200:
                    return
                assert changed.status_code == 412, changed.text
                refusals.append((read.headers["etag"], changed.headers["etag"]))

        await asyncio.gather(*(add_my_mark(writer) for writer in range(WRITERS)))
        final = await client.get(path)

    marks = final.json()["description"]
    assert sorted(marks.strip("[]").split("][")) == sorted(str(w) for w in range(WRITERS))
    assert final.headers["etag"] == f'"{1 + WRITERS}"'  # one version a write: none lost
    # Each refusal was a write whose version another one had moved on from.
    assert all(sent != current for sent, current in refusals)
    record_property(
        "figure",
        f"If-Match ({migrated_url.get_backend_name()}): {WRITERS} writers, {WRITERS} changes"
        f" kept, {len(refusals)} refused with 412 and retried, 0 lost",
    )


def _calls(dependant: Dependant) -> set[Any]:
    """The dependencies a route solves, all the way down."""
    calls = {d.call for d in dependant.dependencies}
    for sub in dependant.dependencies:
        calls |= _calls(sub)
    return calls


def _headers(operation: dict[str, Any]) -> set[str]:
    return {p["name"].lower() for p in operation.get("parameters", ()) if p["in"] == "header"}


def test_every_route_documents_what_its_safe_writes_answer(app: FastAPI) -> None:
    """A route that takes IfMatch, ReadOne or CreationDep documents the header it reads and
    the statuses and headers it may answer with, a resource added later included."""
    paths = app.openapi()["paths"]
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    for route in routes:
        calls = _calls(route.dependant)
        for method in route.methods or ():
            operation = paths[route.path][method.lower()]
            answers = operation["responses"]
            name = f"{method} {route.path}"
            if if_match in calls:
                assert "if-match" in _headers(operation), name
                assert {"409", "412", "428"} <= set(answers), name
                assert "ETag" in answers["412"]["headers"], name
                assert method == "DELETE" or "ETag" in answers["200"]["headers"], name
            if read_one in calls:
                assert "if-none-match" in _headers(operation), name
                assert "ETag" in answers["304"]["headers"], name
                assert "ETag" in answers["200"]["headers"], name
            if creation in calls:
                assert "idempotency-key" in _headers(operation), name
                assert {"409", "422"} <= set(answers), name
                assert {"Location", "ETag"} <= set(answers["201"]["headers"]), name
    covered = [r for r in routes if _calls(r.dependant) & {if_match, read_one, creation}]
    assert len(covered) >= 8
