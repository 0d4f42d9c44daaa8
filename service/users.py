"""User queries and rules, run in the request's transaction; nothing here commits.

Reads take the request's connection, writes its session (see service/api/deps.py).
"""

from typing import Any

from sqlalchemy import Row, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service import auth
from service.auth import USER_COLUMNS
from service.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from service.models import users
from service.schemas import UserCreate, UserUpdate

# Statements are built once, at import: building one costs more than running it, and
# SQLAlchemy caches a built statement's compiled form. They are Core statements on the table
# (rows, not ORM objects), which the benchmark showed to cost far less per request.
_INSERT = insert(users).returning(*USER_COLUMNS)
_BY_ID = select(*USER_COLUMNS).where(users.c.id == bindparam("user_id"))
_EXISTS = select(exists().where(users.c.id == bindparam("user_id")))
_PAGE = (
    select(*USER_COLUMNS)
    .where(users.c.id > bindparam("after"))
    .order_by(users.c.id)
    .limit(bindparam("limit"))
)
# No .values(): the SET clause names the columns passed at execution, updated_at included.
_UPDATE = update(users).where(users.c.id == bindparam("user_id")).returning(*USER_COLUMNS)
_DELETE = delete(users).where(users.c.id == bindparam("user_id"))


def _duplicate_email(exc: IntegrityError) -> bool:
    # Postgres names the constraint; SQLite names the column.
    message = str(exc.orig)
    return "uq_users_email" in message or "users.email" in message


async def create_user(session: AsyncSession, *, data: UserCreate, password_hash: str) -> Row[Any]:
    # The unique constraint decides, so two concurrent requests cannot both win.
    values = data.model_dump(exclude={"password"}) | {"password_hash": password_hash}
    try:
        return (await session.execute(_INSERT, values)).one()
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {data.email} already exists") from None
        raise


async def get_user(connection: AsyncConnection, user_id: int) -> Row[Any]:
    user = (await connection.execute(_BY_ID, {"user_id": user_id})).one_or_none()
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def list_users(
    connection: AsyncConnection, *, after: int | None, limit: int
) -> tuple[list[Row[Any]], int | None]:
    """One page in id order, and the id to continue after (None on the last page)."""
    # Ids start at 1, so "after 0" is the first page; one row more tells whether one follows.
    params = {"after": after or 0, "limit": limit + 1}
    rows = list((await connection.execute(_PAGE, params)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def check_is_caller(connection: AsyncConnection, user_id: int, *, caller_id: int) -> None:
    """404 if there is no such user, 403 if it is someone else: only a user changes their own."""
    if user_id == caller_id:
        return
    if not await connection.scalar(_EXISTS, {"user_id": user_id}):
        raise NotFound(f"user {user_id} not found")
    raise Forbidden("you can only change your own account")


async def update_user(
    session: AsyncSession, user_id: int, *, data: UserUpdate, caller_id: int, caller_token: str
) -> Row[Any]:
    """Apply a partial update: the fields the request set, in one UPDATE ... RETURNING.

    A new password signs out the user's other tokens; the one used here stays valid.
    """
    await check_is_caller(await session.connection(), user_id, caller_id=caller_id)
    changes = data.model_dump(exclude_unset=True)
    if "password" in changes:
        changes["password_hash"] = await auth.hash_password(changes.pop("password"))
    if not changes:
        return await get_user(await session.connection(), user_id)
    try:
        user = (await session.execute(_UPDATE, {"user_id": user_id, **changes})).one_or_none()
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {changes['email']} already exists") from None
        raise
    if user is None:  # deleted since the token was checked
        raise NotAuthenticated("your account no longer exists")
    if "password_hash" in changes:
        await auth.revoke_other_tokens(session, user_id=user_id, keep=caller_token)
    return user


async def delete_user(session: AsyncSession, user_id: int, *, caller_id: int) -> None:
    """Delete the user; the database deletes their items and tokens (ON DELETE CASCADE)."""
    await check_is_caller(await session.connection(), user_id, caller_id=caller_id)
    result = await session.execute(_DELETE, {"user_id": user_id})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotAuthenticated("your account no longer exists")
