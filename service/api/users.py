from typing import Any

from fastapi import APIRouter, Response, status

from service import users
from service.api.deps import ConnectionDep, CursorQuery, Limit, SessionDep, UserId
from service.schemas import Page, UserCreate, UserRead, UserUpdate, encode_cursor

router = APIRouter(prefix="/users", tags=["users"])

_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}
_409: dict[int | str, dict[str, Any]] = {409: {"description": "Another user has this email"}}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_409, summary="Create a user")
async def create_user(data: UserCreate, session: SessionDep, response: Response) -> UserRead:
    user = await users.create_user(session, data=data)
    response.headers["Location"] = f"/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("", summary="List users, oldest first")
async def list_users(
    connection: ConnectionDep, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    page, after = await users.list_users(connection, after=cursor, limit=limit)
    return Page[UserRead](
        items=[UserRead.model_validate(user) for user in page],
        next_cursor=None if after is None else encode_cursor(after),
    )


@router.get("/{user_id}", responses=_404, summary="Get a user")
async def get_user(user_id: UserId, connection: ConnectionDep) -> UserRead:
    return UserRead.model_validate(await users.get_user(connection, user_id))


@router.patch("/{user_id}", responses=_404 | _409, summary="Change some of a user's fields")
async def update_user(user_id: UserId, data: UserUpdate, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await users.update_user(session, user_id, data=data))


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_404,
    summary="Delete a user and their items",
)
async def delete_user(user_id: UserId, session: SessionDep) -> None:
    await users.delete_user(session, user_id)
