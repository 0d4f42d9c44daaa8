"""Property-based API tests, on both backends.

Schemathesis draws requests from the OpenAPI schema: positive cases follow it, negative cases
break it (wrong types, out-of-range ids and limits, missing or unknown fields, bodies that are
not JSON). Every answer must be free of 5xx, use a documented status code and content type, and
match the declared schema; every negative case must be rejected; a rejected request changes
nothing. Schemathesis sends only what a JSON encoder produces, so a strategy of our own adds
what Python's JSON parser also accepts: NaN, Infinity and lone surrogates.
"""

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.app import app_for
from tests.support.bad_input import WRITES, World, Write, assert_clear_4xx, make_world

Operation = APIOperation[Any, Any, Any, Any]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
]
# Bounded and repeatable: ~180 schemathesis and 100 own examples per backend (every phase of
# schemathesis runs from outside in tests/test_schemathesis.py).
BOUNDED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    # One test's examples share its client and transaction (rolled back after the test), so an
    # example may see rows of earlier ones; no check depends on an empty database.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The schema the app serves; the engine is made in the lifespan, so this touches no database.
OPENAPI = app_for(make_url("sqlite://")).openapi()
CONFIG = {
    # A valid request the current state refuses: 412, an If-Match of a version the resource is
    # no longer at, as 404 is an id that names nothing (schemathesis expects the others).
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
        }
    },
}
SCHEMA = schemathesis.openapi.from_dict(OPENAPI, config=SchemathesisConfig.from_dict(CONFIG))


def _operations() -> list[Operation]:
    operations = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def _has_input(operation: Operation) -> bool:
    return bool(len(operation.path_parameters) or len(operation.query) or operation.body)


# An operation without parameters or body has no negative case to draw.
SCHEMA_CASES = [
    pytest.param(operation, mode, id=f"{operation.method.upper()} {operation.path} {mode.value}")
    for operation in _operations()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _has_input(operation)
]


NewWorld = Callable[[], Awaitable[World]]


@pytest.fixture
def new_world(
    client: httpx.AsyncClient, connection: AsyncConnection, make_user: Callable[..., Any]
) -> NewWorld:
    """A world of its own for each example: an example may delete the user or item of another."""

    async def new() -> World:
        return await make_world(client, connection, await make_user())

    return new


async def _send(client: httpx.AsyncClient, case: Case[Operation]) -> httpx.Response:
    # requests encodes the case as schemathesis itself sends it (negative cases hold nested
    # query values and raw bytes); httpx then sends that through the app's ASGI transport.
    kwargs = case.as_transport_kwargs(base_url="http://test")
    prepared = requests.Request(**kwargs).prepare()
    assert prepared.method is not None
    assert prepared.url is not None
    assert prepared.body is None or isinstance(prepared.body, bytes | str)
    return await client.request(
        prepared.method, prepared.url, headers=kwargs["headers"], content=prepared.body
    )


@pytest.mark.parametrize(("operation", "mode"), SCHEMA_CASES)
@settings(BOUNDED, max_examples=8)
@given(data=st.data())
async def test_operation_answers_as_its_schema_declares(
    new_world: NewWorld, operation: Operation, mode: GenerationMode, data: st.DataObject
) -> None:
    world = await new_world()
    # Random ids almost never exist; half the positive cases name rows that do.
    existing = {"user_id": world.user["id"], "item_id": world.item["id"]}
    fixed = None
    if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="existing ids"):
        # Only the ids this world has: a resource added later draws its own.
        fixed = {p.name: existing[p.name] for p in operation.path_parameters if p.name in existing}
    case = data.draw(
        operation.as_strategy(generation_mode=mode, path_parameters=fixed), label="case"
    )
    before = await world.snapshot()

    response = await _send(world.client, _fresh_key(case))

    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert await world.snapshot() == before


def _fresh_key(case: Case[Operation]) -> Case[Operation]:
    """The case with a new Idempotency-Key, if it has one: a client sends a new key for each
    create (the same key with another body is a 422 by design, tests/test_idempotency.py)."""
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    return case


# Biased towards what databases and encoders trip on: NUL, lone surrogates, whitespace, NaN.
_text = st.text(st.sampled_from(" \t\n\x00\ud800\u2028@.aZé") | st.characters(), max_size=20)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | _text
_tricky = st.sampled_from(["\x00", "\udfff", " ", float("nan"), float("-inf"), 2**63])
_json = st.recursive(
    _tricky | _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=5,
)
_FIELD_VALUES = {
    "email": st.emails() | _text,
    "name": _text,
    "password": _text,
    "title": _text,
    "description": _text,
}


def _bodies(write: Write) -> st.SearchStrategy[Any]:
    fields = {name: _FIELD_VALUES[name] | _json for name in write.body}
    return st.fixed_dictionaries({}, optional=fields) | _json


@pytest.mark.parametrize("write", WRITES, ids=str)
@settings(BOUNDED, max_examples=25)
@given(data=st.data())
async def test_write_with_any_json_answers_2xx_or_4xx(
    new_world: NewWorld, write: Write, data: st.DataObject
) -> None:
    world = await new_world()
    body = data.draw(_bodies(write), label="body")
    before = await world.snapshot()

    # json.dumps writes NaN as NaN and a lone surrogate as \ud800; Python's parser takes both.
    response = await world.client.request(
        write.method,
        world.url(write.path),
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )

    if response.status_code < 300:
        # What the response says was stored is what a later read gets.
        location = response.headers.get("location", world.url(write.path))
        assert (await world.client.get(location)).json() == response.json()
    else:
        status = 409 if response.status_code == 409 else 422
        assert_clear_4xx(response, status, str(write))
        assert await world.snapshot() == before
