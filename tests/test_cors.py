"""CORS: only CORS_ORIGINS may call the API from a browser; scripts there read the headers that
safe writes need, and send theirs."""

from typing import Any

import httpx
import pytest

from service.config import load_settings
from tests.support.accounts import Account

APP = "https://app.example"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"CORS_ORIGINS": [APP]}


async def test_preflight_from_an_allowed_origin_allows_the_safe_write_headers(
    anonymous: httpx.AsyncClient, me: Account
) -> None:
    response = await anonymous.options(
        f"/items/{me.id}",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, if-match, content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "PATCH" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "if-match", "if-none-match", "idempotency-key"):
        assert header in allowed


async def test_answer_to_an_allowed_origin_exposes_etag_location_request_id_retry_after(
    client: httpx.AsyncClient, me: Account
) -> None:
    response = await client.post(
        f"/users/{me.id}/items", json={"title": "T"}, headers={"Origin": APP}
    )

    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == APP
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "location", "x-request-id", "retry-after"} <= exposed


async def test_other_origins_get_no_cors_headers(client: httpx.AsyncClient, me: Account) -> None:
    response = await client.get(f"/users/{me.id}", headers={"Origin": "https://evil.example"})
    preflight = await client.options(
        "/users", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


class TestNone:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    async def test_without_cors_origins_no_origin_is_allowed(
        self, client: httpx.AsyncClient, me: Account
    ) -> None:
        response = await client.get(f"/users/{me.id}", headers={"Origin": APP})
        preflight = await client.options(
            "/users", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
        )

        assert "access-control-allow-origin" not in response.headers
        assert preflight.status_code == 405  # no CORS: OPTIONS is a method /users does not serve


def test_cors_origins_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", " https://a.example, https://b.example ")

    assert load_settings().CORS_ORIGINS == ["https://a.example", "https://b.example"]
