"""Item queries and rules. Runs statements, never commits: the request owns the transaction."""

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import partial_updates
from service.errors import NotFound
from service.models import Item, User
from service.schemas import ItemCreate, ItemUpdate

# Writes are single INSERT/UPDATE ... RETURNING statements: one round trip that also gives back
# the row, and no ORM unit-of-work flush, which costs more Python time than the statement.
_INSERT = insert(Item).returning(Item)
_UPDATES = partial_updates(Item, ("title", "description"))


async def create_item(session: AsyncSession, *, owner_id: int, data: ItemCreate) -> Item:
    # The foreign key decides whether the owner exists, also if it is deleted meanwhile.
    try:
        result = await session.scalars(_INSERT, {"owner_id": owner_id, **data.model_dump()})
    except IntegrityError as exc:
        if _missing_owner(exc):
            raise NotFound(f"user {owner_id} not found") from None
        raise
    return result.one()


def _missing_owner(exc: IntegrityError) -> bool:
    # Postgres names the constraint; SQLite only says a foreign key failed (items has one).
    message = str(exc.orig)
    return "fk_items_owner_id_users" in message or "FOREIGN KEY constraint failed" in message


async def get_item(session: AsyncSession, item_id: int) -> Item:
    item = await session.get(Item, item_id)
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


async def list_items(
    session: AsyncSession, *, owner_id: int, after: int | None, limit: int
) -> tuple[list[Item], int | None]:
    """One page of a user's items in id order, and the id to continue after."""
    query = select(Item).where(Item.owner_id == owner_id).order_by(Item.id).limit(limit + 1)
    if after is not None:
        query = query.where(Item.id > after)
    items = list((await session.scalars(query)).all())
    # Only an empty page needs to tell "no such user" from "no more items".
    if not items and not await session.scalar(select(exists().where(User.id == owner_id))):
        raise NotFound(f"user {owner_id} not found")
    if len(items) > limit:
        return items[:limit], items[limit - 1].id
    return items, None


async def update_item(session: AsyncSession, item_id: int, *, data: ItemUpdate) -> Item:
    """Apply a partial update in one statement; updated_at changes with it."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return await get_item(session, item_id)
    params = {"row_id": item_id} | {f"new_{field}": value for field, value in changes.items()}
    item: Item | None = await session.scalar(_UPDATES[frozenset(changes)], params)
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


async def delete_item(session: AsyncSession, item_id: int) -> None:
    result = await session.execute(delete(Item).where(Item.id == item_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"item {item_id} not found")
