from fastapi import APIRouter, Response, status

from service import users
from service.api.conditional import (
    CHANGE_ONE,
    DELETE_ONE,
    READ_ONE,
    IfMatch,
    ReadOne,
    reads_one,
)
from service.api.deps import (
    BearerToken,
    CurrentReader,
    CurrentUser,
    CursorQuery,
    Limit,
    NewPasswordHash,
    ReadSessionDep,
    SessionDep,
    UserId,
)
from service.api.errors import documented
from service.api.idempotency import CREATED, IDEMPOTENT, CreationDep
from service.errors import Conflict, NotAuthenticated
from service.models import User
from service.paging import Page
from service.schemas import UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=documented(Conflict) | CREATED,
    openapi_extra=IDEMPOTENT,
    summary="Sign up (no token needed)",
)
async def create_user(
    password_hash: NewPasswordHash, data: UserCreate, session: SessionDep, reply: CreationDep
) -> Response:
    if replayed := await reply.replay(session, caller_id=None, password=data.password):
        return replayed
    assert password_hash is not None  # data holds a valid password: new_password_hash hashed it
    user = await users.create_user(session, data=data, password_hash=password_hash)
    location = f"/users/{user.id}"
    return reply.created(session, user, UserRead, location=location, password_hash=password_hash)


@router.get(
    "/me",
    response_model=UserRead,
    summary="The user the token belongs to",
    **reads_one(NotAuthenticated),
)
async def me(caller: CurrentReader, read: ReadOne) -> User | Response:
    return read(caller)


@router.get("/{user_id}", response_model=UserRead, summary="Get a user", **READ_ONE)
async def get_user(
    _caller: CurrentReader, user_id: UserId, session: ReadSessionDep, read: ReadOne
) -> User | Response:
    return read(await users.get_user(session, user_id))


@router.get("", responses=documented(NotAuthenticated), summary="List users, oldest first")
async def list_users(
    _caller: CurrentReader, session: ReadSessionDep, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    return Page[UserRead].of(*await users.list_users(session, after=cursor, limit=limit))


@router.patch("/{user_id}", response_model=UserRead, summary="Change your own fields", **CHANGE_ONE)
async def update_user(
    password_hash: NewPasswordHash,
    caller: CurrentUser,
    token: BearerToken,
    user_id: UserId,
    data: UserUpdate,
    session: SessionDep,
    write: IfMatch,
) -> User:
    user = await users.update_user(
        session,
        user_id,
        data=data,
        caller=caller,
        password_hash=password_hash,
        keep_token=token,
        if_match=write,
    )
    return write.tagged(user)


@router.delete(
    "/{user_id}", summary="Delete your account, with your items and tokens", **DELETE_ONE
)
async def delete_user(
    caller: CurrentUser, user_id: UserId, session: SessionDep, write: IfMatch
) -> None:
    await users.delete_user(session, user_id, caller=caller, if_match=write)
