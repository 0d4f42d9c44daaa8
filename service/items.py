"""Item queries and rules, run in the request's transaction; nothing here commits.

Reads take the request's connection, writes its session (see service/api/deps.py).
"""

from typing import Any

from sqlalchemy import Row, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.errors import NotFound
from service.models import items, users
from service.schemas import ItemCreate, ItemUpdate

# Built once, Core on the table: see service/users.py.
_INSERT = insert(items).returning(*items.c)
_BY_ID = select(items).where(items.c.id == bindparam("item_id"))
_PAGE = (
    select(items)
    .where(items.c.owner_id == bindparam("owner_id"), items.c.id > bindparam("after"))
    .order_by(items.c.id)
    .limit(bindparam("limit"))
)
_USER_EXISTS = select(exists().where(users.c.id == bindparam("user_id")))
_UPDATE = update(items).where(items.c.id == bindparam("item_id")).returning(*items.c)
_DELETE = delete(items).where(items.c.id == bindparam("item_id"))


def _missing_owner(exc: IntegrityError) -> bool:
    # Postgres names the constraint; SQLite only says a foreign key failed (items has one).
    message = str(exc.orig)
    return "fk_items_owner_id_users" in message or "FOREIGN KEY constraint failed" in message


async def create_item(session: AsyncSession, *, owner_id: int, data: ItemCreate) -> Row[Any]:
    # The foreign key decides whether the owner exists, also if it is deleted meanwhile.
    try:
        return (await session.execute(_INSERT, {"owner_id": owner_id, **data.model_dump()})).one()
    except IntegrityError as exc:
        if _missing_owner(exc):
            raise NotFound(f"user {owner_id} not found") from None
        raise


async def get_item(connection: AsyncConnection, item_id: int) -> Row[Any]:
    item = (await connection.execute(_BY_ID, {"item_id": item_id})).one_or_none()
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


async def list_items(
    connection: AsyncConnection, *, owner_id: int, after: int | None, limit: int
) -> tuple[list[Row[Any]], int | None]:
    """One page of a user's items in id order, and the id to continue after."""
    params = {"owner_id": owner_id, "after": after or 0, "limit": limit + 1}
    rows = list((await connection.execute(_PAGE, params)).all())
    # Only an empty page needs to tell "no such user" from "no more items".
    if not rows and not await connection.scalar(_USER_EXISTS, {"user_id": owner_id}):
        raise NotFound(f"user {owner_id} not found")
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def update_item(session: AsyncSession, item_id: int, *, data: ItemUpdate) -> Row[Any]:
    """Apply a partial update: the fields the request set, in one UPDATE ... RETURNING."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return await get_item(await session.connection(), item_id)
    item = (await session.execute(_UPDATE, {"item_id": item_id, **changes})).one_or_none()
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


async def delete_item(session: AsyncSession, item_id: int) -> None:
    result = await session.execute(_DELETE, {"item_id": item_id})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"item {item_id} not found")
