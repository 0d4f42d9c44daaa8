"""Item queries and rules. Flushes, never commits: the request owns the transaction."""

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from service.errors import NotFound
from service.models import Item, User
from service.schemas import ItemCreate, ItemUpdate


async def create_item(session: AsyncSession, *, owner_id: int, data: ItemCreate) -> Item:
    item = Item(owner_id=owner_id, **data.model_dump())
    session.add(item)
    # The foreign key decides whether the owner exists, also if it is deleted meanwhile.
    try:
        await session.flush()
    except IntegrityError as exc:
        if _missing_owner(exc):
            raise NotFound(f"user {owner_id} not found") from None
        raise
    return item


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


async def update_item(session: AsyncSession, *, item: Item, data: ItemUpdate) -> Item:
    item_id = item.id  # a failed flush expires the object
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    try:
        await session.flush()
    except StaleDataError:
        # Deleted by another request between our read and our UPDATE.
        raise NotFound(f"item {item_id} not found") from None
    return item


async def delete_item(session: AsyncSession, item_id: int) -> None:
    result = await session.execute(delete(Item).where(Item.id == item_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"item {item_id} not found")
