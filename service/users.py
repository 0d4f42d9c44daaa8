"""User queries and rules. Runs statements, never commits: the request owns the transaction."""

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import partial_updates
from service.errors import Conflict, NotFound
from service.models import User
from service.schemas import UserCreate, UserUpdate


def _duplicate_email(exc: IntegrityError) -> bool:
    # Postgres names the constraint; SQLite names the column.
    message = str(exc.orig)
    return "uq_users_email" in message or "users.email" in message


# Writes are single INSERT/UPDATE ... RETURNING statements: one round trip that also gives back
# the row, and no ORM unit-of-work flush, which costs more Python time than the statement.
_INSERT = insert(User).returning(User)


async def create_user(session: AsyncSession, *, data: UserCreate) -> User:
    # The unique constraint decides, so two concurrent requests cannot both win.
    try:
        result = await session.scalars(_INSERT, {"email": data.email, "name": data.name})
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {data.email} already exists") from None
        raise
    return result.one()


# Built once, run with parameters: building a statement costs more Python time than running
# it from SQLAlchemy's compiled cache, and session.get() builds one on every call.
_USER_BY_ID = select(User).where(User.id == bindparam("user_id"))
_PAGE = select(User).where(User.id > bindparam("after")).order_by(User.id).limit(bindparam("limit"))


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.scalar(_USER_BY_ID, {"user_id": user_id})
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def list_users(
    session: AsyncSession, *, after: int | None, limit: int
) -> tuple[list[User], int | None]:
    """One page in id order, and the id to continue after (None on the last page)."""
    # Ids start at 1, so "after 0" is the first page.
    params = {"after": after or 0, "limit": limit + 1}
    users = list((await session.scalars(_PAGE, params)).all())
    if len(users) > limit:
        return users[:limit], users[limit - 1].id
    return users, None


_UPDATES = partial_updates(User, ("email", "name"))


async def update_user(session: AsyncSession, user_id: int, *, data: UserUpdate) -> User:
    """Apply a partial update in one statement; updated_at changes with it."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return await get_user(session, user_id)
    params = {"row_id": user_id} | {f"new_{field}": value for field, value in changes.items()}
    try:
        user: User | None = await session.scalar(_UPDATES[frozenset(changes)], params)
    except IntegrityError as exc:
        if _duplicate_email(exc):
            raise Conflict(f"a user with email {changes['email']} already exists") from None
        raise
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def delete_user(session: AsyncSession, user_id: int) -> None:
    # The database deletes the user's items (ON DELETE CASCADE), on SQLite too.
    result = await session.execute(delete(User).where(User.id == user_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"user {user_id} not found")
