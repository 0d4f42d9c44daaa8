"""User queries and rules. Each function takes the request's session and at most flushes:
service/api/deps.py commits once, before the response, or rolls back."""

from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from service import auth
from service.db import keyset_page, violated
from service.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from service.models import User, now
from service.schemas import UserCreate, UserUpdate

# What the API shows of a user: never the password hash.
COLUMNS = (User.id, User.email, User.name, User.created_at, User.updated_at)

# Statements built once, at import: building one costs more than running it.
# A new row by one ORM INSERT ... RETURNING: the User it gives is in the session as if added
# and flushed, for less work per request than add() and flush() (bench/README.md).
_INSERT = insert(User).returning(User)
_BY_ID = select(User).where(User.id == bindparam("user_id"))
# Pages are read-only: rows of the columns shown, no ORM objects to track.
_PAGE = (
    select(*COLUMNS).where(User.id > bindparam("after")).order_by(User.id).limit(bindparam("limit"))
)


def _duplicate_email(exc: IntegrityError) -> bool:
    return violated(exc, "uq_users_email", sqlite="users.email")


async def create_user(session: AsyncSession, *, data: UserCreate, password_hash: str) -> User:
    values = {"email": data.email, "name": data.name, "password_hash": password_hash}
    try:
        # The unique constraint decides, so two concurrent sign-ups cannot both win.
        user = (await session.execute(_INSERT, values)).scalar_one()
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {data.email} already exists") from None
        raise
    return user


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = (await session.execute(_BY_ID, {"user_id": user_id})).scalar_one_or_none()
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def list_users(
    session: AsyncSession, *, after: int | None, limit: int
) -> tuple[list[Row[Any]], int | None]:
    return await keyset_page(session, _PAGE, {}, after=after, limit=limit)


async def get_own_account(session: AsyncSession, user_id: int, *, caller: User) -> User:
    """The caller's own account: 404 if there is no such user, 403 if it is someone else's."""
    if user_id != caller.id:
        await get_user(session, user_id)
        raise Forbidden("you can only change your own account")
    return caller


async def update_user(
    session: AsyncSession, user_id: int, *, data: UserUpdate, caller: User, caller_token: str
) -> User:
    """Apply a partial update. A new password signs out the user's other tokens."""
    user = await get_own_account(session, user_id, caller=caller)
    changes = data.model_dump(exclude_unset=True)
    if "password" in changes:
        changes["password_hash"] = await auth.hash_password(changes.pop("password"))
        await auth.revoke_other_tokens(session, user_id=user.id, keep=caller_token)
    for field, value in changes.items():
        setattr(user, field, value)
    if changes:  # moves even when the values are the ones already stored
        user.updated_at = now()
    try:
        await session.flush()
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {changes['email']} already exists") from None
        raise
    except StaleDataError:  # the UPDATE found no row: deleted since the token was checked
        raise NotAuthenticated("your account no longer exists") from None
    return user


async def delete_user(session: AsyncSession, user_id: int, *, caller: User) -> None:
    """Delete the user; the database deletes their items and tokens (ON DELETE CASCADE)."""
    user = await get_own_account(session, user_id, caller=caller)
    await session.delete(user)
    await session.flush()
