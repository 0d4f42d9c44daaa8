"""Passwords, access tokens and the login lock (the domain side; no fastapi here).

Passwords are Argon2id hashes (pwdlib), computed in worker threads, a few at a time, so the
event loop keeps serving while a login takes its ~100 ms. Tokens are 256 random bits, handed
out once and stored only as their SHA-256. Failed logins are rows in login_failures, so the
lock holds across workers, replicas and restarts.
"""

import asyncio
import functools
import hashlib
import math
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Column, Row, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db import Database
from service.errors import NotAuthenticated, TooManyAttempts
from service.models import access_tokens, login_failures, users
from service.schemas import MAX_EMAIL, Email

_EMAIL: TypeAdapter[str] = TypeAdapter(Email)

_PASSWORDS = PasswordHash((Argon2Hasher(),))


def _hashing_threads() -> int:
    """Cores this process may run on, less one left to the event loop (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


# Each Argon2 hash takes a core and 64 MiB for its duration: a burst of logins must not take
# the cores that serve every other request (bench/README.md measures GET during logins).
_HASHING = asyncio.Semaphore(_hashing_threads())
# 32 random bytes in URL-safe base64: 43 characters, or more if a client pads them.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43,128}")

# What a user is to the API: never the password hash.
USER_COLUMNS: tuple[Column[Any], ...] = (
    users.c.id,
    users.c.email,
    users.c.name,
    users.c.created_at,
    users.c.updated_at,
)

_USER_BY_TOKEN = (
    select(*USER_COLUMNS)
    .join(access_tokens, access_tokens.c.user_id == users.c.id)
    .where(
        access_tokens.c.token_hash == bindparam("token_hash"),
        access_tokens.c.expires_at > bindparam("now"),
    )
)
_LOGIN_USER = select(users.c.id, users.c.password_hash).where(users.c.email == bindparam("email"))
_INSERT_TOKEN = insert(access_tokens)
_REVOKE = delete(access_tokens).where(access_tokens.c.token_hash == bindparam("token_hash"))
_REVOKE_OTHERS = delete(access_tokens).where(
    access_tokens.c.user_id == bindparam("user_id"),
    access_tokens.c.token_hash != bindparam("token_hash"),
)
_DELETE_EXPIRED_TOKENS = delete(access_tokens).where(
    access_tokens.c.user_id == bindparam("user_id"), access_tokens.c.expires_at <= bindparam("now")
)
_RECENT_FAILURES = (
    select(login_failures.c.failed_at)
    .where(login_failures.c.email == bindparam("email"))
    .order_by(login_failures.c.failed_at.desc())
    .limit(bindparam("limit"))
)
_RECORD_FAILURE = insert(login_failures)
_FORGET_FAILURES = delete(login_failures).where(login_failures.c.email == bindparam("email"))
_FORGET_OLD_FAILURES = delete(login_failures).where(
    login_failures.c.failed_at < bindparam("before")
)
# Any fixed number: keeps these advisory locks apart from other users of the same key space.
_LOGIN_LOCK_CLASS = 0x10C


def now() -> datetime:
    return datetime.now(UTC)


async def hash_password(password: str) -> str:
    async with _HASHING:
        return await asyncio.to_thread(_PASSWORDS.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether the password matches; as slow for a missing hash as for a wrong password."""
    async with _HASHING:
        return await asyncio.to_thread(_verify, password, password_hash)


def _verify(password: str, password_hash: str | None) -> bool:
    # In the worker thread: the dummy hash, made on first use, is as slow to make as to check.
    return _PASSWORDS.verify(password, password_hash or _dummy_hash()) and password_hash is not None


@functools.cache
def _dummy_hash() -> str:
    return _PASSWORDS.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return _TOKEN.fullmatch(token) is not None


async def user_for_token(connection: AsyncConnection, token: str) -> Row[Any] | None:
    """The user a valid (known, unexpired, unrevoked) token belongs to: one indexed lookup."""
    params = {"token_hash": token_hash(token), "now": now()}
    return (await connection.execute(_USER_BY_TOKEN, params)).one_or_none()


async def issue_token(session: AsyncSession, *, user_id: int, ttl: int) -> str:
    token = secrets.token_urlsafe(32)
    issued = now()
    await session.execute(_DELETE_EXPIRED_TOKENS, {"user_id": user_id, "now": issued})
    await session.execute(
        _INSERT_TOKEN,
        {
            "token_hash": token_hash(token),
            "user_id": user_id,
            "created_at": issued,
            "expires_at": issued + timedelta(seconds=ttl),
        },
    )
    return token


async def revoke_token(session: AsyncSession, token: str) -> None:
    await session.execute(_REVOKE, {"token_hash": token_hash(token)})


async def revoke_other_tokens(session: AsyncSession, *, user_id: int, keep: str) -> None:
    await session.execute(_REVOKE_OTHERS, {"user_id": user_id, "token_hash": token_hash(keep)})


@dataclass(frozen=True)
class LoginLock:
    """LOGIN_MAX_FAILURES failures within LOGIN_WINDOW seconds lock an email for a window."""

    max_failures: int
    window_s: int

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)


async def login(
    database: Database, *, username: str, password: str, lock: LoginLock, ttl: int
) -> str:
    """A new access token for the email and password; NotAuthenticated or TooManyAttempts.

    Each phase that touches the database is a short transaction of its own: no connection is
    held while the password is checked.
    """
    wrong = NotAuthenticated("incorrect email or password")
    try:
        email: str = _EMAIL.validate_python(username)
    except ValidationError:
        email = username.lower()
    if len(email) > MAX_EMAIL or "\x00" in email:  # cannot be anyone's, nor be counted
        await verify_password(password, None)  # as slow as any other wrong login
        raise wrong
    async with database.session() as session:
        await count_attempt(session, email=email, lock=lock)
        user = await login_user(await session.connection(), email)
    if not await verify_password(password, user.password_hash if user else None):
        raise wrong
    assert user is not None
    try:
        async with database.session() as session:
            await forget_failures(session, email=email)
            return await issue_token(session, user_id=user.id, ttl=ttl)
    except IntegrityError:  # the user was deleted meanwhile
        raise wrong from None


async def count_attempt(session: AsyncSession, *, email: str, lock: LoginLock) -> None:
    """Count a login attempt as failed until it succeeds; TooManyAttempts if the email is locked.

    Counting before the password is checked, one attempt per email at a time, is what stops
    two attempts racing past the threshold: the second sees the first one's failure.
    """
    attempted = now()
    if session.get_bind().dialect.name == "postgresql":
        # One attempt per email at a time; on SQLite, BEGIN IMMEDIATE already serialises.
        lock_email = func.pg_advisory_xact_lock(_LOGIN_LOCK_CLASS, func.hashtext(email))
        await session.execute(select(lock_email))
    # Failures older than two windows can no longer be part of a lock that still holds.
    await session.execute(_FORGET_OLD_FAILURES, {"before": attempted - 2 * lock.window})
    recent = list(
        await session.scalars(_RECENT_FAILURES, {"email": email, "limit": lock.max_failures})
    )
    if len(recent) == lock.max_failures and recent[0] - recent[-1] <= lock.window:
        # The newest failure made the count; the lock lasts one window from it.
        left = (recent[0] + lock.window - attempted).total_seconds()
        if left > 0:
            retry_after = max(1, math.ceil(left))
            raise TooManyAttempts(
                f"too many failed logins; try again in {retry_after} s", retry_after=retry_after
            )
    await session.execute(_RECORD_FAILURE, {"email": email, "failed_at": attempted})


async def login_user(connection: AsyncConnection, email: str) -> Row[Any, Any] | None:
    """The id and password hash of the user with this email, if any."""
    return (await connection.execute(_LOGIN_USER, {"email": email})).one_or_none()


async def forget_failures(session: AsyncSession, *, email: str) -> None:
    """A successful login wipes the count, the attempt's own provisional failure included."""
    await session.execute(_FORGET_FAILURES, {"email": email})
