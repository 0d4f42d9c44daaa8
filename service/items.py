"""Item queries and rules, run in the request's transaction; nothing here commits.

Reads take the request's connection, writes its session (see service/api/deps.py). Only an
item's owner may change it; the write's own WHERE clause says so, in the same statement.
"""

from typing import Any, NoReturn

from sqlalchemy import Row, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.errors import Forbidden, NotAuthenticated, NotFound
from service.models import items, users
from service.schemas import ItemCreate, ItemUpdate
from service.users import check_is_caller

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
_OWNED = (items.c.id == bindparam("item_id"), items.c.owner_id == bindparam("caller_id"))
_UPDATE = update(items).where(*_OWNED).returning(*items.c)
_DELETE = delete(items).where(*_OWNED)


async def create_item(
    session: AsyncSession, *, owner_id: int, caller_id: int, data: ItemCreate
) -> Row[Any]:
    await check_is_caller(await session.connection(), owner_id, caller_id=caller_id)
    try:
        return (await session.execute(_INSERT, {"owner_id": owner_id, **data.model_dump()})).one()
    except IntegrityError:  # the only constraint left to fail: the caller was deleted meanwhile
        raise NotAuthenticated("your account no longer exists") from None


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


async def _missing_or_not_yours(connection: AsyncConnection, item_id: int) -> NoReturn:
    """Why the caller's write matched no row: 404 if the item does not exist, else 403."""
    await get_item(connection, item_id)  # NotFound if there is no such item
    raise Forbidden(f"item {item_id} belongs to another user")


async def update_item(
    session: AsyncSession, item_id: int, *, data: ItemUpdate, caller_id: int
) -> Row[Any]:
    """Apply a partial update: the fields the request set, in one UPDATE ... RETURNING."""
    changes = data.model_dump(exclude_unset=True)
    params = {"item_id": item_id, "caller_id": caller_id}
    if changes:
        item = (await session.execute(_UPDATE, params | changes)).one_or_none()
    else:
        item = (await session.execute(_BY_ID, params)).one_or_none()
    if item is None or item.owner_id != caller_id:
        await _missing_or_not_yours(await session.connection(), item_id)
    return item


async def delete_item(session: AsyncSession, item_id: int, *, caller_id: int) -> None:
    result = await session.execute(_DELETE, {"item_id": item_id, "caller_id": caller_id})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await _missing_or_not_yours(await session.connection(), item_id)
