from fastapi import APIRouter, Response, status

from service import items
from service.api.deps import (
    CurrentReader,
    CurrentUser,
    CursorQuery,
    ItemId,
    Limit,
    ReadSessionDep,
    SessionDep,
    UserId,
)
from service.api.errors import documented
from service.errors import Forbidden, NotAuthenticated, NotFound
from service.models import Item
from service.paging import Page
from service.schemas import ItemCreate, ItemRead, ItemUpdate

router = APIRouter(tags=["items"])


@router.post(
    "/users/{user_id}/items",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemRead,
    responses=documented(NotAuthenticated, NotFound, Forbidden),
    summary="Create an item of your own",
)
async def create_item(
    caller: CurrentUser, user_id: UserId, data: ItemCreate, session: SessionDep, response: Response
) -> Item:
    item = await items.create_item(session, owner_id=user_id, data=data, caller=caller)
    response.headers["Location"] = f"/items/{item.id}"
    return item


@router.get(
    "/users/{user_id}/items",
    responses=documented(NotAuthenticated, NotFound),
    summary="List a user's items",
)
async def list_items(
    _caller: CurrentReader,
    user_id: UserId,
    session: ReadSessionDep,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> Page[ItemRead]:
    page = await items.list_items(session, owner_id=user_id, after=cursor, limit=limit)
    return Page[ItemRead].of(*page)


@router.get(
    "/items/{item_id}",
    response_model=ItemRead,
    responses=documented(NotAuthenticated, NotFound),
    summary="Get an item",
)
async def get_item(_caller: CurrentReader, item_id: ItemId, session: ReadSessionDep) -> Item:
    return await items.get_item(session, item_id)


@router.patch(
    "/items/{item_id}",
    response_model=ItemRead,
    responses=documented(NotAuthenticated, NotFound, Forbidden),
    summary="Change some of your item's fields",
)
async def update_item(
    caller: CurrentUser, item_id: ItemId, data: ItemUpdate, session: SessionDep
) -> Item:
    return await items.update_item(session, item_id, data=data, caller=caller)


@router.delete(
    "/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=documented(NotAuthenticated, NotFound, Forbidden),
    summary="Delete your item",
)
async def delete_item(caller: CurrentUser, item_id: ItemId, session: SessionDep) -> None:
    await items.delete_item(session, item_id, caller=caller)
