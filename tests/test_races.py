"""Races between requests, decided by the database rather than by checks in Python."""

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import URL

from service import items, users
from service.db import create_engine, create_sessionmaker
from service.errors import NotFound
from service.models import Item, User
from service.schemas import ItemCreate, ItemUpdate, UserCreate, UserUpdate
from tests.conftest import settings_for


@pytest.mark.parametrize("target", ["user", "item"])
async def test_update_of_row_deleted_meanwhile_is_not_found(postgres_url: URL, target: str) -> None:
    # On Postgres, reads do not block writers: a PATCH can load a row that a concurrent
    # DELETE removes before the PATCH's UPDATE runs. (SQLite writers queue instead.)
    engine = create_engine(settings_for(postgres_url))
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as setup:
            user = await users.create_user(setup, data=UserCreate(email="r@example.com", name="R"))
            item = await items.create_item(setup, owner_id=user.id, data=ItemCreate(title="T"))
        async with sessions() as patcher:
            loaded_user = await users.get_user(patcher, user.id)
            loaded_item = await items.get_item(patcher, item.id)
            async with sessions.begin() as deleter:  # commits while the patcher is mid-request
                await deleter.execute(delete(Item).where(Item.id == item.id))
                await deleter.execute(delete(User).where(User.id == user.id))

            update = (
                users.update_user(patcher, user=loaded_user, data=UserUpdate(name="X"))
                if target == "user"
                else items.update_item(patcher, item=loaded_item, data=ItemUpdate(title="X"))
            )
            with pytest.raises(NotFound, match=f"{target} .* not found"):
                await update
    finally:
        await engine.dispose()
