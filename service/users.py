"""User queries and rules. Each function takes the request's session and at most flushes:
service/api/deps.py commits once, before the response, or rolls back."""

from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from service import auth
from service.db import ReadSession, WriteSession
from service.errors import Conflict, Forbidden, NotAuthenticated, found
from service.models import User, violated
from service.paging import keyset_page
from service.preconditions import Precondition
from service.schemas import UserCreate, UserRead, UserUpdate

# Statements built once, at import: building one costs more than running it.
# A new row by one ORM INSERT ... RETURNING: the User it gives is in the session as if added
# and flushed, for less work per request than add() and flush() (docs/benchmark.md).
_INSERT = insert(User).returning(User)
_BY_ID = select(User).where(User.id == bindparam("user_id"))
# Pages are rows of the columns UserRead shows (never the password hash): nothing to track.
_PAGE = (
    select(*(User.__table__.c[field] for field in UserRead.model_fields))
    .where(User.id > bindparam("after"))
    .order_by(User.id)
    .limit(bindparam("limit"))
)


def _email_taken(exc: IntegrityError, email: str) -> Exception:
    """What a write that broke a constraint raises: Conflict if another user has the email."""
    if violated(exc, "uq_users_email", sqlite="users.email"):
        return Conflict(f"a user with email {email} already exists")
    return exc


async def create_user(session: WriteSession, *, data: UserCreate, password_hash: str) -> User:
    values = {"email": data.email, "name": data.name, "password_hash": password_hash}
    try:
        # The unique constraint decides, so two concurrent sign-ups cannot both win.
        user = (await session.execute(_INSERT, values)).scalar_one()
    except IntegrityError as exc:
        raise _email_taken(exc, data.email) from None
    return user


async def list_users(
    session: ReadSession, *, after: int | None, limit: int
) -> tuple[list[Row[Any]], int | None]:
    return await keyset_page(session, _PAGE, {}, after=after, limit=limit)


async def get_user(session: ReadSession, user_id: int) -> User:
    user = (await session.execute(_BY_ID, {"user_id": user_id})).scalar_one_or_none()
    return found(user, f"user {user_id}")


async def get_own_account(session: ReadSession, user_id: int, *, caller: User) -> User:
    """The caller's own account: 404 if there is no such user, 403 if it is someone else's."""
    if user_id != caller.id:
        await get_user(session, user_id)
        raise Forbidden("you can only change your own account")
    return caller


def _account_gone() -> NotAuthenticated:
    """What a write finds when the caller's own account was deleted under it."""
    return NotAuthenticated("your account no longer exists")


async def update_user(
    session: WriteSession,
    user_id: int,
    *,
    data: UserUpdate,
    caller: User,
    password_hash: str | None,
    keep_token: str,
    if_match: Precondition,
) -> User:
    """Apply a partial update to the caller's own account; a new password (`password_hash`)
    signs out its other tokens, all but `keep_token`."""
    user = await get_own_account(session, user_id, caller=caller)
    if_match.check(user)
    changes = data.model_dump(exclude_unset=True, exclude={"password"})
    if password_hash is not None:
        changes["password_hash"] = password_hash
        await auth.revoke_other_tokens(session, user_id=user.id, keep=keep_token)
    user.apply(changes)
    try:
        await if_match.save(session, user, gone=_account_gone())
    except IntegrityError as exc:
        raise _email_taken(exc, changes.get("email", "")) from None
    return user


async def delete_user(
    session: WriteSession, user_id: int, *, caller: User, if_match: Precondition
) -> None:
    """Delete the user; the database deletes their items and tokens (ON DELETE CASCADE)."""
    user = await get_own_account(session, user_id, caller=caller)
    await if_match.delete(session, user, gone=_account_gone())
