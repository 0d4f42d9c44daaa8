from typing import Any

from fastapi import APIRouter, Response, status

from service import items
from service.api.deps import (
    ConnectionDep,
    CurrentUser,
    CursorQuery,
    ItemId,
    Limit,
    SessionDep,
    UserId,
)
from service.schemas import ItemCreate, ItemRead, ItemUpdate, Page, encode_cursor

router = APIRouter(tags=["items"])

_401: dict[int | str, dict[str, Any]] = {401: {"description": "No valid bearer token"}}
_403: dict[int | str, dict[str, Any]] = {403: {"description": "Not yours"}}
_404_user: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}
_404_item: dict[int | str, dict[str, Any]] = {404: {"description": "No such item"}}


@router.post(
    "/users/{user_id}/items",
    status_code=status.HTTP_201_CREATED,
    responses=_401 | _403 | _404_user,
    summary="Create an item of your own",
)
async def create_item(
    caller: CurrentUser, user_id: UserId, data: ItemCreate, session: SessionDep, response: Response
) -> ItemRead:
    item = await items.create_item(session, owner_id=user_id, caller_id=caller.id, data=data)
    response.headers["Location"] = f"/items/{item.id}"
    return ItemRead.model_validate(item)


@router.get("/users/{user_id}/items", responses=_401 | _404_user, summary="List a user's items")
async def list_items(
    _caller: CurrentUser,
    user_id: UserId,
    connection: ConnectionDep,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> Page[ItemRead]:
    page, after = await items.list_items(connection, owner_id=user_id, after=cursor, limit=limit)
    return Page[ItemRead](
        items=[ItemRead.model_validate(item) for item in page],
        next_cursor=None if after is None else encode_cursor(after),
    )


@router.get("/items/{item_id}", responses=_401 | _404_item, summary="Get an item")
async def get_item(_caller: CurrentUser, item_id: ItemId, connection: ConnectionDep) -> ItemRead:
    return ItemRead.model_validate(await items.get_item(connection, item_id))


@router.patch(
    "/items/{item_id}",
    responses=_401 | _403 | _404_item,
    summary="Change some of your item's fields",
)
async def update_item(
    caller: CurrentUser, item_id: ItemId, data: ItemUpdate, session: SessionDep
) -> ItemRead:
    item = await items.update_item(session, item_id, data=data, caller_id=caller.id)
    return ItemRead.model_validate(item)


@router.delete(
    "/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_401 | _403 | _404_item,
    summary="Delete your item",
)
async def delete_item(caller: CurrentUser, item_id: ItemId, session: SessionDep) -> None:
    await items.delete_item(session, item_id, caller_id=caller.id)
