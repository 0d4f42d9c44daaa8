"""Operations: request ids, the access log, /metrics and traces."""

import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import URL

from tests.support.accounts import PASSWORD, Account, sign_up
from tests.support.app import serve


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_X.y", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
        ("ünï", False),
    ],
)
async def test_response_carries_the_callers_request_id_or_a_new_uuid(
    client: httpx.AsyncClient, sent: str, kept: bool
) -> None:
    response = await client.get("/users/me", headers={b"X-Request-ID": sent.encode("latin-1")})

    returned = response.headers["x-request-id"]
    if kept:
        assert returned == sent
    else:
        assert str(uuid.UUID(returned)) == returned


async def test_every_answer_has_a_request_id(client: httpx.AsyncClient, me: Account) -> None:
    answers = [
        await client.get("/health/live"),
        await client.get("/users/me"),
        await client.get("/users/me", headers={"Authorization": "Bearer nope"}),
        await client.get("/users/0"),
        await client.get("/no/such/path"),
        await client.put(f"/users/{me.id}"),
        await client.get("/metrics"),
    ]

    assert [r.status_code for r in answers] == [200, 200, 401, 422, 404, 405, 200]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("settings_overrides", [{"LOG_FORMAT": "json"}])
async def test_one_access_log_line_per_request_with_the_route_template(
    capsys: pytest.CaptureFixture[str], client: httpx.AsyncClient, me: Account
) -> None:
    capsys.readouterr()
    await client.get(f"/users/{me.id}", headers={"X-Request-ID": "trace-me"})
    await client.get("/no/such/path")

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if '"service.access"' in line]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/users/{user_id}", 200),
        ("GET", "unmatched", 404),
    ]
    assert lines[0]["event"] == "GET /users/{user_id} 200"
    assert lines[0]["request_id"] == "trace-me"
    assert lines[0]["level"] == "info"
    assert all(line["duration_ms"] >= 0 and line["timestamp"].endswith("Z") for line in lines)


def _samples(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def test_metrics_count_requests_by_route_template_and_leave_out_probes(
    client: httpx.AsyncClient, me: Account
) -> None:
    before = (await client.get("/metrics")).text
    await client.get(f"/users/{me.id}")
    await client.get(f"/users/{me.id}")
    await client.get("/users/987654321")
    await client.get("/nope/1")
    await client.get("/nope/2")
    await client.get("/health/live")
    response = await client.get("/metrics", headers={"Authorization": ""})

    after = response.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")

    def grew(name: str, **labels: str) -> float:
        return _samples(after, name, **labels) - _samples(before, name, **labels)

    get_user = {"method": "GET", "route": "/users/{user_id}"}
    assert grew("http_requests_total", **get_user, status="200") == 2
    assert grew("http_requests_total", **get_user, status="404") == 1
    assert grew("http_requests_total", route="unmatched", status="404") == 2
    assert grew("http_requests_total", route="/health/live") == 0
    assert grew("http_request_duration_seconds_count", **get_user, status="200") == 2
    assert "/nope/1" not in after
    for state in ("in_use", "idle", "overflow"):
        assert f'db_pool_connections{{state="{state}"}}' in after
    assert "db_pool_waiting_requests" in after
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_metrics_name_the_docs_routes_and_keep_unmatched_for_paths_no_route_serves(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    await client.get("/openapi.json")
    await client.get("/static-offline-docs/swagger-ui.css")  # a file of the docs' mount
    await client.get("/static-offline-docs/no-such-file.css")
    await client.get("/no/such/path")
    after = (await client.get("/metrics")).text

    def grew(**labels: str) -> float:
        name = "http_requests_total"
        return _samples(after, name, **labels) - _samples(before, name, **labels)

    assert grew(route="/openapi.json", status="200") == 1
    assert grew(route="/static-offline-docs/{path}", status="200") == 1
    assert grew(route="/static-offline-docs/{path}", status="404") == 1
    assert grew(route="unmatched") == 1


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    migrated_url: URL, spans: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with serve(migrated_url, tracer_provider=provider) as client:
        yield client


async def test_traces_span_each_request_and_statement_without_parameter_values(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    account = await sign_up(traced, "traced@example.com")
    other = await sign_up(traced, "other@example.com")
    spans.clear()

    response = await traced.get(
        f"/users/{other.id}", headers=account.headers | {"X-Request-ID": "span-me"}
    )

    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind.name == "SERVER"]
    statements = [s for s in finished if s.attributes and "db.statement" in s.attributes]
    assert server.name == "GET /users/{user_id}"
    assert server.attributes is not None
    assert server.attributes["request.id"] == "span-me"
    assert len(statements) >= 2  # the token lookup, the user
    assert all(s.context.trace_id == server.context.trace_id for s in statements)
    recorded = repr([s.attributes for s in finished])
    for secret in (account.token, PASSWORD):
        assert secret not in recorded
    assert "access_tokens" in recorded


async def test_traces_leave_out_probes_and_metrics(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    live = await traced.get("/health/live")
    metrics = await traced.get("/metrics")

    assert live.json() == {"status": "ok"}
    assert "http_requests_total" in metrics.text
    assert [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"] == []


async def test_docs_pages_load_only_the_services_own_files(
    anonymous: httpx.AsyncClient,
) -> None:
    for page in ("/docs", "/redoc"):
        html = (await anonymous.get(page)).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)

        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            assert (await anonymous.get(asset)).status_code == 200, asset
