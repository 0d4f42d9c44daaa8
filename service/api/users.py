from typing import Any

from fastapi import APIRouter, Response, status

from service import auth, users
from service.api.deps import (
    BearerToken,
    ConnectionDep,
    CurrentUser,
    CursorQuery,
    DatabaseDep,
    Limit,
    SessionDep,
    UserId,
)
from service.schemas import Page, UserCreate, UserRead, UserUpdate, encode_cursor

router = APIRouter(prefix="/users", tags=["users"])

_401: dict[int | str, dict[str, Any]] = {401: {"description": "No valid bearer token"}}
_403: dict[int | str, dict[str, Any]] = {403: {"description": "Not your account"}}
_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}
_409: dict[int | str, dict[str, Any]] = {409: {"description": "Another user has this email"}}


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=_409, summary="Sign up (no token needed)"
)
async def create_user(data: UserCreate, database: DatabaseDep, response: Response) -> UserRead:
    # Hashing takes ~100 ms of a worker thread: take a connection only once it is done.
    password_hash = await auth.hash_password(data.password)
    async with database.session() as session:
        user = await users.create_user(session, data=data, password_hash=password_hash)
    response.headers["Location"] = f"/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/me", responses=_401, summary="The user the token belongs to")
async def me(caller: CurrentUser) -> UserRead:
    return caller


@router.get("", responses=_401, summary="List users, oldest first")
async def list_users(
    _caller: CurrentUser, connection: ConnectionDep, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    page, after = await users.list_users(connection, after=cursor, limit=limit)
    return Page[UserRead](
        items=[UserRead.model_validate(user) for user in page],
        next_cursor=None if after is None else encode_cursor(after),
    )


@router.get("/{user_id}", responses=_401 | _404, summary="Get a user")
async def get_user(_caller: CurrentUser, user_id: UserId, connection: ConnectionDep) -> UserRead:
    return UserRead.model_validate(await users.get_user(connection, user_id))


@router.patch(
    "/{user_id}", responses=_401 | _403 | _404 | _409, summary="Change some of your own fields"
)
async def update_user(
    caller: CurrentUser, token: BearerToken, user_id: UserId, data: UserUpdate, session: SessionDep
) -> UserRead:
    user = await users.update_user(
        session, user_id, data=data, caller_id=caller.id, caller_token=token
    )
    return UserRead.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_401 | _403 | _404,
    summary="Delete your account, with your items and tokens",
)
async def delete_user(caller: CurrentUser, user_id: UserId, session: SessionDep) -> None:
    await users.delete_user(session, user_id, caller_id=caller.id)
