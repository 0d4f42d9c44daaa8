from fastapi import APIRouter, Depends, Response, status

from service import auth, users
from service.api.conditional import CHANGE_ONE, DELETE_ONE, FRESH, READ_ONE, IfMatch, ReadOne
from service.api.deps import (
    BearerToken,
    CurrentReader,
    CurrentUser,
    CursorQuery,
    Limit,
    ReadSessionDep,
    SessionDep,
    UserId,
    password_turn,
    password_turn_if_sent,
)
from service.api.errors import documented
from service.api.idempotency import CREATED, CreationDep
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
    dependencies=[Depends(password_turn)],
    summary="Sign up (no token needed)",
)
async def create_user(data: UserCreate, session: SessionDep, reply: CreationDep) -> Response:
    if replayed := await reply.replay(caller_id=None):
        return replayed
    password_hash = await auth.hash_password(data.password)
    user = await users.create_user(session, data=data, password_hash=password_hash)
    return reply.created(user, UserRead, location=f"/users/{user.id}")


@router.get(
    "/me",
    response_model=UserRead,
    responses=documented(NotAuthenticated) | FRESH,
    summary="The user the token belongs to",
)
async def me(caller: CurrentReader, read: ReadOne) -> User | Response:
    return read(caller)


@router.get("/{user_id}", response_model=UserRead, responses=READ_ONE, summary="Get a user")
async def get_user(
    _caller: CurrentReader, user_id: UserId, session: ReadSessionDep, read: ReadOne
) -> User | Response:
    return read(await users.get_user(session, user_id))


@router.get("", responses=documented(NotAuthenticated), summary="List users, oldest first")
async def list_users(
    _caller: CurrentReader, session: ReadSessionDep, limit: Limit = 50, cursor: CursorQuery = None
) -> Page[UserRead]:
    return Page[UserRead].of(*await users.list_users(session, after=cursor, limit=limit))


@router.patch(
    "/{user_id}",
    response_model=UserRead,
    responses=CHANGE_ONE,
    dependencies=[Depends(password_turn_if_sent)],
    summary="Change some of your own fields",
)
async def update_user(
    caller: CurrentUser,
    token: BearerToken,
    user_id: UserId,
    data: UserUpdate,
    session: SessionDep,
    write: IfMatch,
) -> User:
    user = await users.get_own_account(session, user_id, caller=caller)
    write.check(user)
    password_hash = None
    if data.password is not None:
        # Argon2 takes a core for a tenth of a second: not while this request holds a
        # connection. Its reads are done; its writes begin a transaction of their own.
        await session.commit()
        password_hash = await auth.hash_password(data.password)
    user = await users.update_user(
        session, user, data=data, password_hash=password_hash, keep_token=token, if_match=write
    )
    return write.tagged(user)


@router.delete(
    "/{user_id}", summary="Delete your account, with your items and tokens", **DELETE_ONE
)
async def delete_user(
    caller: CurrentUser, user_id: UserId, session: SessionDep, write: IfMatch
) -> None:
    await users.delete_user(session, user_id, caller=caller, if_match=write)
