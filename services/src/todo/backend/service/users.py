"""Accounts: registration and login, with argon2id password hashes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from todo.backend.models import User
from todo.common.context import bind
from todo.common.errors import ProblemError

# OWASP's minimum argon2id profile: 19 MiB, 2 passes (todo.common.heap keeps such blocks off the
# heap once freed). Hashing runs in a thread, off the event loop.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_DUMMY_HASH = _hasher.hash("not-a-real-password")

#: Holds one of the few password-hash slots for the duration of a hash (AuthLimits.hashing); the
#: HTTP routes pass one, scripts calling these functions directly need none.
HashSlot = Callable[[], AbstractAsyncContextManager[None]]


async def register_user(
    session: AsyncSession, email: str, password: str, hash_slot: HashSlot = nullcontext
) -> User:
    async with hash_slot():
        password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = User(id=uuid.uuid4(), email=email, password_hash=password_hash, created_at=datetime.now(UTC))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ProblemError(
            409, "email-already-registered", "An account with this e-mail already exists."
        ) from None
    bind(user_id=user.id)
    return user


async def authenticate(
    session: AsyncSession, email: str, password: str, hash_slot: HashSlot = nullcontext
) -> User:
    """The user with these credentials; unknown e-mail and bad password get the same 401 and work.

    The hash slot is taken before the user is read: a login waiting for a slot holds no database
    connection, so a flood of logins cannot drain the pool that every other route needs."""
    async with hash_slot():
        user = (
            await session.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()
        stored = user.password_hash if user else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, stored, password)
            ok = user is not None
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok or user is None:
        raise ProblemError(401, "invalid-credentials", "E-mail or password is wrong.")
    user.last_login_at = datetime.now(UTC)
    await session.commit()
    bind(user_id=user.id)
    return user
