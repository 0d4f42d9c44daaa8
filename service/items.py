"""Item queries and rules. Each function takes the request's session and at most flushes:
service/api/deps.py commits once, before the response, or rolls back."""

from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from service.db import ReadSession, WriteSession
from service.errors import Forbidden, NotAuthenticated, NotFound, found
from service.models import Item, User, violated
from service.paging import keyset_page
from service.preconditions import Precondition
from service.schemas import ItemCreate, ItemUpdate
from service.users import get_own_account, get_user

# Statements built once, at import, as in service/users.py.
_INSERT = insert(Item).returning(Item)
_BY_ID = select(Item).where(Item.id == bindparam("item_id"))
_PAGE = (
    select(*Item.__table__.c)
    .where(Item.owner_id == bindparam("owner_id"), Item.id > bindparam("after"))
    .order_by(Item.id)
    .limit(bindparam("limit"))
)


async def create_item(
    session: WriteSession, *, owner_id: int, data: ItemCreate, caller: User
) -> Item:
    owner = await get_own_account(session, owner_id, caller=caller)
    try:
        values = {"owner_id": owner.id, **data.model_dump()}
        item = (await session.execute(_INSERT, values)).scalar_one()
    except IntegrityError as exc:
        # The owner was deleted since the token was checked (items has no other foreign key).
        if violated(exc, "fk_items_owner_id_users", sqlite="FOREIGN KEY constraint failed"):
            raise NotAuthenticated("your account no longer exists") from None
        raise
    return item


async def get_item(session: ReadSession, item_id: int) -> Item:
    item = (await session.execute(_BY_ID, {"item_id": item_id})).scalar_one_or_none()
    return found(item, f"item {item_id}")


async def list_items(
    session: ReadSession, *, owner_id: int, after: int | None, limit: int
) -> tuple[list[Row[Any]], int | None]:
    """One page of a user's items in id order, and the id to continue after."""
    page = await keyset_page(session, _PAGE, {"owner_id": owner_id}, after=after, limit=limit)
    if not page[0]:  # only an empty page needs to tell "no such user" from "no more items"
        await get_user(session, owner_id)
    return page


async def get_own_item(session: ReadSession, item_id: int, *, caller: User) -> Item:
    """The caller's own item: 404 if there is no such item, 403 if it is someone else's."""
    item = await get_item(session, item_id)
    if item.owner_id != caller.id:
        raise Forbidden(f"item {item_id} belongs to another user")
    return item


async def update_item(
    session: WriteSession, item_id: int, *, data: ItemUpdate, caller: User, if_match: Precondition
) -> Item:
    """Apply a partial update: the fields the request set."""
    item = await get_own_item(session, item_id, caller=caller)
    if_match.check(item)
    item.apply(data.model_dump(exclude_unset=True))
    await if_match.save(session, item, gone=NotFound(f"item {item_id} not found"))
    return item


async def delete_item(
    session: WriteSession, item_id: int, *, caller: User, if_match: Precondition
) -> None:
    item = await get_own_item(session, item_id, caller=caller)
    await if_match.delete(session, item, gone=NotFound(f"item {item_id} not found"))
