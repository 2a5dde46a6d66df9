"""argon2id for passwords and recovery codes; verification always costs the same, user or no user."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Hasher:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                                  hash_len=32, salt_len=16, type=Type.ID)
        # Verified against when there is no real hash (unknown user, no password): same work, same timing.
        self._dummy = self._ph.hash(secrets.token_urlsafe(24))

    @classmethod
    def from_settings(cls, settings) -> Hasher:  # noqa: ANN001
        return cls(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                   parallelism=settings.argon2_parallelism)

    async def hash(self, secret: str) -> str:
        return await asyncio.to_thread(self._ph.hash, secret)

    async def verify(self, stored: str | None, secret: str) -> bool:
        return await asyncio.to_thread(self._verify, stored, secret)

    def _verify(self, stored: str | None, secret: str) -> bool:
        target = stored or self._dummy
        try:
            ok = self._ph.verify(target, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._ph.check_needs_rehash(stored)
        except InvalidHashError:
            return True
