"""A request's database work: one transaction, or statement by statement where marked."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from service import users
from service.api.deps import SessionDep, UnitOfWorkRoute, one_statement
from service.main import create_app
from service.schemas import UserCreate
from tests.conftest import ALEMBIC_INI, settings_for


def _two_writes() -> Callable[[AsyncSession], Awaitable[None]]:
    """A new endpoint (the marker sets an attribute on it) whose second INSERT fails with 409."""

    async def create_two_users_with_one_email(session: SessionDep) -> None:
        await users.create_user(session, data=UserCreate(email="dup@example.com", name="First"))
        await users.create_user(session, data=UserCreate(email="dup@example.com", name="Second"))

    return create_two_users_with_one_email


@asynccontextmanager
async def _served_with(url: URL, router: APIRouter) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings_for(url), alembic_ini=ALEMBIC_INI)
    app.include_router(router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_write_route_keeps_all_or_nothing_of_its_statements(migrated_url: URL) -> None:
    router = APIRouter(route_class=UnitOfWorkRoute)
    router.post("/two")(_two_writes())

    async with _served_with(migrated_url, router) as client:
        response = await client.post("/two")
        stored = (await client.get("/users")).json()["items"]

    assert response.status_code == 409
    assert stored == []


async def test_one_statement_route_commits_each_statement_on_its_own(migrated_url: URL) -> None:
    # What the marker means, and why a route that writes twice must not carry it.
    router = APIRouter(route_class=UnitOfWorkRoute)
    router.post("/two")(one_statement(_two_writes()))

    async with _served_with(migrated_url, router) as client:
        response = await client.post("/two")
        stored = (await client.get("/users")).json()["items"]

    assert response.status_code == 409
    assert [user["name"] for user in stored] == ["First"]
