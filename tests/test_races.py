"""Races between requests, decided by the database rather than by checks in Python."""

import asyncio

import pytest
from sqlalchemy import delete, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker

from service import items, users
from service.db import create_engine
from service.errors import NotFound
from service.models import Item, User
from service.schemas import ItemCreate, ItemUpdate, UserCreate, UserUpdate
from tests.conftest import settings_for

_WAITING_ON_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND datname = current_database()"
)


@pytest.mark.parametrize("target", ["user", "item"])
async def test_update_racing_a_delete_is_not_found(postgres_url: URL, target: str) -> None:
    # A PATCH's UPDATE waits on the row lock of a DELETE still in flight; once the DELETE
    # commits, Postgres re-checks the row, finds it gone and updates nothing: 404, not 500.
    engine = create_engine(settings_for(postgres_url))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions.begin() as setup:
            user = await users.create_user(setup, data=UserCreate(email="r@example.com", name="R"))
            item = await items.create_item(setup, owner_id=user.id, data=ItemCreate(title="T"))
        observer = engine.execution_options(isolation_level="AUTOCOMMIT")  # a fresh view per poll
        async with sessions() as patcher, observer.connect() as observing:
            async with sessions.begin() as deleter:
                await deleter.execute(delete(Item).where(Item.id == item.id))
                await deleter.execute(delete(User).where(User.id == user.id))
                update = asyncio.create_task(
                    users.update_user(patcher, user.id, data=UserUpdate(name="X"))
                    if target == "user"
                    else items.update_item(patcher, item.id, data=ItemUpdate(title="X"))
                )
                while not await observing.scalar(_WAITING_ON_A_LOCK):
                    assert not update.done(), "the UPDATE did not wait for the DELETE"
                    await asyncio.sleep(0.01)
            with pytest.raises(NotFound, match=f"{target} .* not found"):
                await update
    finally:
        await engine.dispose()
