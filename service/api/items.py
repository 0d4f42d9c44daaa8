from fastapi import APIRouter, Response, status

from service import items
from service.api.conditional import CHANGE_ONE, DELETE_ONE, READ_ONE, IfMatch, ReadOne
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
from service.api.idempotency import CREATED, IDEMPOTENT, CreationDep
from service.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from service.models import Item
from service.paging import Page
from service.schemas import ItemCreate, ItemRead, ItemUpdate

router = APIRouter(tags=["items"])


@router.post(
    "/users/{user_id}/items",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemRead,
    responses=documented(NotAuthenticated, NotFound, Forbidden, Conflict) | CREATED,
    openapi_extra=IDEMPOTENT,
    summary="Create an item of your own",
)
async def create_item(
    caller: CurrentUser, user_id: UserId, data: ItemCreate, session: SessionDep, reply: CreationDep
) -> Response:
    if replayed := await reply.replay(session, caller_id=caller.id):
        return replayed
    item = await items.create_item(session, owner_id=user_id, data=data, caller=caller)
    return reply.created(session, item, ItemRead, location=f"/items/{item.id}")


@router.get("/items/{item_id}", response_model=ItemRead, summary="Get an item", **READ_ONE)
async def get_item(
    _caller: CurrentReader, item_id: ItemId, session: ReadSessionDep, read: ReadOne
) -> Item | Response:
    return read(await items.get_item(session, item_id))


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


@router.delete("/items/{item_id}", summary="Delete your item", **DELETE_ONE)
async def delete_item(
    caller: CurrentUser, item_id: ItemId, session: SessionDep, write: IfMatch
) -> None:
    await items.delete_item(session, item_id, caller=caller, if_match=write)


@router.patch("/items/{item_id}", response_model=ItemRead, summary="Change your item", **CHANGE_ONE)
async def update_item(
    caller: CurrentUser, item_id: ItemId, data: ItemUpdate, session: SessionDep, write: IfMatch
) -> Item:
    return write.tagged(
        await items.update_item(session, item_id, data=data, caller=caller, if_match=write)
    )
