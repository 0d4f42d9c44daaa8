"""Idempotent creates (the IETF httpapi draft "The Idempotency-Key HTTP Header Field", as
Stripe does it), the domain side: a caller's key, the fingerprint of its request, and the
response, stored in the transaction of the write they belong to."""

import hashlib
import json
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, select

from service import auth
from service.db import WriteSession
from service.errors import Conflict
from service.models import IdempotencyKey, now

# Any fixed number: keeps these advisory locks apart from other users of the same key space.
_IN_FLIGHT_LOCK_CLASS = 0x1DE
# Expired keys each keyed request removes at most: bounded work, through the expires_at index.
_EXPIRED_BATCH = 100

_BY_KEY = select(IdempotencyKey).where(
    IdempotencyKey.caller_id == bindparam("caller_id"), IdempotencyKey.key == bindparam("key")
)
# SKIP LOCKED: two requests never wait on the rows the other is removing.
_EXPIRED = (
    select(IdempotencyKey.id)
    .where(IdempotencyKey.expires_at <= bindparam("now"))
    .order_by(IdempotencyKey.expires_at)
    .limit(_EXPIRED_BATCH)
    .with_for_update(skip_locked=True)
)
_FORGET_EXPIRED = delete(IdempotencyKey).where(IdempotencyKey.id.in_(_EXPIRED))


class KeyReused(Exception):
    """The key came before with another request."""


def fingerprint(*parts: object) -> str:
    """What identifies a request: the same parts, the same fingerprint."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


async def first_response(
    session: WriteSession, *, caller_id: int, key: str, fingerprint: str, password: str | None
) -> IdempotencyKey | None:
    """The stored response of the request that first came with this key, or None: this request
    is the first, and its response is to be remembered.

    Conflict while a request with the key is still in progress; KeyReused if it came with
    another request (another `password`, for a request that sets one).
    """
    if session.get_bind().dialect.name == "postgresql":
        # Held until this transaction ends. On SQLite, writes take their turn one at a time
        # (BEGIN IMMEDIATE): a repeat runs after the first and finds its response.
        lock = func.pg_try_advisory_xact_lock(
            _IN_FLIGHT_LOCK_CLASS, func.hashtext(f"{caller_id}:{key}")
        )
        if not await session.scalar(select(lock)):
            raise Conflict("a request with this Idempotency-Key is still in progress")
    moment = now()
    # Rows the session never loaded: nothing in it to synchronise.
    await session.execute(
        _FORGET_EXPIRED, {"now": moment}, execution_options={"synchronize_session": False}
    )
    stored = (
        await session.execute(_BY_KEY, {"caller_id": caller_id, "key": key})
    ).scalar_one_or_none()
    if stored is None:
        return None
    if stored.expires_at <= moment:  # expired, but not yet among those removed
        await session.delete(stored)
        await session.flush()
        return None
    if stored.fingerprint != fingerprint or not await _same_password(stored, password):
        raise KeyReused
    return stored


async def _same_password(stored: IdempotencyKey, password: str | None) -> bool:
    if stored.password_hash is None:
        return True
    return password is not None and await auth.verify_password(password, stored.password_hash)


def remember(
    session: WriteSession,
    *,
    caller_id: int,
    key: str,
    fingerprint: str,
    ttl: timedelta,
    status_code: int,
    headers: dict[str, str],
    body: str,
    password_hash: str | None,
) -> None:
    """Keep the response of this request for a repeat of it; the request's commit writes it."""
    session.add(
        IdempotencyKey(
            caller_id=caller_id,
            key=key,
            fingerprint=fingerprint,
            password_hash=password_hash,
            status_code=status_code,
            headers=headers,
            body=body,
            expires_at=now() + ttl,
        )
    )
