"""Passwords, access tokens and the login lock (the domain side; no fastapi here).

Passwords are Argon2id hashes (pwdlib), computed in worker threads, a few at a time, so the
event loop keeps serving while a login hashes. Tokens are 256 random bits, handed
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
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import bindparam, delete, func, select

from service.db import ReadSession, WriteSession
from service.errors import NotAuthenticated, TooManyAttempts
from service.models import AccessToken, LoginFailure, User, now
from service.schemas import MAX_EMAIL, Email, Password

_EMAIL: TypeAdapter[str] = TypeAdapter(Email)
_PASSWORD: TypeAdapter[str] = TypeAdapter(Password)

_PASSWORDS = PasswordHash((Argon2Hasher(),))


def _hashing_threads() -> int:
    """Cores this process may run on, less one left to the event loop (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


# Each Argon2 hash takes a core and 64 MiB for its duration: a burst of logins must not take
# the cores that serve every other request.
_HASHING = asyncio.Semaphore(_hashing_threads())
# Sign-ups and logins take a turn here before they open their database session, so that
# while they wait for a hashing thread they hold no database connection: a burst of them holds
# at most this many.
PASSWORD_REQUESTS = asyncio.Semaphore(_hashing_threads())
# 32 random bytes in URL-safe base64: 43 characters, or more if a client pads them.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43,128}")

# Built once at import: the token lookup runs on every request that needs a token.
_USER_BY_TOKEN = (
    select(User)
    .join(AccessToken, AccessToken.user_id == User.id)
    .where(
        AccessToken.token_hash == bindparam("token_hash"), AccessToken.expires_at > bindparam("now")
    )
)
# A request that writes holds its caller's row until it commits (Postgres; SQLite's writes take
# turns anyway). Every write to a user or an item is its owner's, so one account's writes take
# turns: one made without If-Match never loses a race to another (it would find the version
# moved, StaleDataError), and one made with If-Match sees the version the last one left. NO KEY
# UPDATE: other accounts' rows that refer to this one (their foreign key checks) do not wait.
_USER_BY_TOKEN_TO_WRITE = _USER_BY_TOKEN.with_for_update(of=User, key_share=True)
# Bulk deletes of rows the session never loaded: nothing in it to synchronise.
_NOT_LOADED = {"synchronize_session": False}
_REVOKE = delete(AccessToken).where(AccessToken.token_hash == bindparam("token_hash"))
_REVOKE_OTHERS = delete(AccessToken).where(
    AccessToken.user_id == bindparam("user_id"), AccessToken.token_hash != bindparam("token_hash")
)
_DELETE_EXPIRED_TOKENS = delete(AccessToken).where(
    AccessToken.user_id == bindparam("user_id"), AccessToken.expires_at <= bindparam("now")
)
_LOGIN_USER = select(User.id, User.password_hash).where(User.email == bindparam("email"))
_RECENT_FAILURES = (
    select(LoginFailure.failed_at)
    .where(LoginFailure.email == bindparam("email"))
    .order_by(LoginFailure.failed_at.desc())
    .limit(bindparam("limit"))
)
_FORGET_FAILURES = delete(LoginFailure).where(LoginFailure.email == bindparam("email"))
_FORGET_OLD_FAILURES = delete(LoginFailure).where(LoginFailure.failed_at < bindparam("before"))
# Any fixed number: keeps these advisory locks apart from other users of the same key space.
_LOGIN_LOCK_CLASS = 0x10C


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


async def user_for_token(session: ReadSession, token: str, *, writes: bool) -> User | None:
    """The user a valid (known, unexpired, unrevoked) token belongs to: one indexed lookup;
    locked until the transaction ends, for a request that `writes`."""
    params = {"token_hash": token_hash(token), "now": now()}
    statement = _USER_BY_TOKEN_TO_WRITE if writes else _USER_BY_TOKEN
    user: User | None = (await session.execute(statement, params)).scalar_one_or_none()
    return user


def valid_password(password: str) -> bool:
    """Whether a new password meets the rules (schemas.Password), so that it is worth hashing."""
    try:
        _PASSWORD.validate_python(password)
    except ValidationError:
        return False
    return True


async def issue_token(session: WriteSession, *, user_id: int, ttl: int) -> str:
    token = secrets.token_urlsafe(32)
    issued = now()
    await session.execute(
        _DELETE_EXPIRED_TOKENS, {"user_id": user_id, "now": issued}, execution_options=_NOT_LOADED
    )
    session.add(
        AccessToken(
            token_hash=token_hash(token),
            user_id=user_id,
            created_at=issued,
            expires_at=issued + timedelta(seconds=ttl),
        )
    )
    await session.flush()
    return token


async def revoke_token(session: WriteSession, token: str) -> None:
    await session.execute(_REVOKE, {"token_hash": token_hash(token)}, execution_options=_NOT_LOADED)


async def revoke_other_tokens(session: WriteSession, *, user_id: int, keep: str) -> None:
    await session.execute(
        _REVOKE_OTHERS,
        {"user_id": user_id, "token_hash": token_hash(keep)},
        execution_options=_NOT_LOADED,
    )


@dataclass(frozen=True)
class LoginLock:
    """LOGIN_MAX_FAILURES failures within LOGIN_WINDOW seconds lock an email for a window."""

    max_failures: int
    window: timedelta


async def log_in(
    session: WriteSession, *, username: str, password: str, lock: LoginLock, ttl: int
) -> str:
    """A new access token for the email and password.

    TooManyAttempts while the email is locked. NotAuthenticated for a wrong email or password,
    with the failure added to the session: the caller commits it, so that it counts.
    """
    wrong = NotAuthenticated("incorrect email or password")
    try:
        email: str = _EMAIL.validate_python(username)
    except ValidationError:
        email = username.lower()
    if len(email) > MAX_EMAIL or "\x00" in email:  # cannot be anyone's, nor be counted
        await verify_password(password, None)  # as slow as any other wrong login
        raise wrong
    attempted = now()
    await _check_lock(session, email=email, lock=lock, attempted=attempted)
    user = (await session.execute(_LOGIN_USER, {"email": email})).one_or_none()
    verified = await verify_password(password, user.password_hash if user else None)
    if user is None or not verified:
        session.add(LoginFailure(email=email, failed_at=attempted))
        await session.flush()
        raise wrong
    await session.execute(_FORGET_FAILURES, {"email": email}, execution_options=_NOT_LOADED)
    return await issue_token(session, user_id=user.id, ttl=ttl)


async def _check_lock(
    session: WriteSession, *, email: str, lock: LoginLock, attempted: datetime
) -> None:
    """TooManyAttempts if the email is locked.

    One attempt per email at a time, until its transaction ends: the next one sees whether it
    failed, so two attempts cannot race past the threshold together.
    """
    if session.get_bind().dialect.name == "postgresql":
        # On SQLite, BEGIN IMMEDIATE already serialises every transaction.
        lock_email = func.pg_advisory_xact_lock(_LOGIN_LOCK_CLASS, func.hashtext(email))
        await session.execute(select(lock_email))
    # Failures older than two windows can no longer be part of a lock that still holds.
    await session.execute(
        _FORGET_OLD_FAILURES, {"before": attempted - 2 * lock.window}, execution_options=_NOT_LOADED
    )
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
