"""Signing keys: ES256 private keys sealed under the key ring in the database, with rotation.

All `active` keys are published in the JWKS and verify; the newest one that this process can open signs.
Rotation adds a key (old ones keep verifying); retirement erases the private key, drops the public key from
the JWKS and marks the kid revoked in Redis so every service stops accepting it at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.identity.models import SigningKey
from shared.auth.keys import ALGORITHM, generate_signing_key
from shared.crypto.errors import DecryptionError

log = logging.getLogger("quorum.api.signing")


def _aad(kid: str) -> str:
    return f"signing-key:{kid}"


async def create_signing_key(session: AsyncSession, keyring: Any) -> str:
    kid = secrets.token_urlsafe(12)
    pem, jwk = generate_signing_key()
    session.add(SigningKey(kid=kid, alg=ALGORITHM, public_jwk={**jwk, "kid": kid},
                           private_key_sealed=keyring.seal(pem, _aad(kid)), status="active"))
    await session.flush()
    return kid


async def retire_signing_key(session: AsyncSession, kid: str) -> bool:
    result = await session.execute(
        sa.update(SigningKey).where(SigningKey.kid == kid, SigningKey.status == "active")
        .values(status="retired", retired_at=datetime.now(UTC), private_key_sealed=None))
    return result.rowcount == 1


async def list_signing_keys(session: AsyncSession) -> list[SigningKey]:
    return list((await session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at))).all())


class SigningKeyStore:
    """Per-process cache of the signing key and the published public keys; also the api's own KeySource."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], keyring: Any, *,
                 cache_seconds: float = 30.0) -> None:
        self._factory = session_factory
        self._keyring = keyring
        self._cache_seconds = cache_seconds
        self._loaded_at = float("-inf")
        self._public: dict[str, dict[str, Any]] = {}
        self._signer: tuple[str, bytes] | None = None
        self._lock = asyncio.Lock()

    async def _load(self, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at <= self._cache_seconds:
                return
            async with self._factory() as session:
                rows = list((await session.scalars(
                    sa.select(SigningKey).where(SigningKey.status == "active")
                    .order_by(SigningKey.created_at.desc()))).all())
            signer = None
            for row in rows:
                try:
                    signer = (row.kid, self._keyring.unseal(row.private_key_sealed, _aad(row.kid)))
                    break
                except DecryptionError:
                    continue  # sealed under a key ring this process does not hold
            self._public = {row.kid: dict(row.public_jwk) for row in rows}
            self._signer = signer
            self._loaded_at = time.monotonic()

    async def signer(self) -> tuple[str, bytes]:
        await self._load()
        if self._signer is None:
            async with self._factory() as session, session.begin():
                kid = await create_signing_key(session, self._keyring)
            log.warning("no usable signing key: created one", extra={"kid": kid})
            await self._load(force=True)
        assert self._signer is not None
        return self._signer

    async def jwks(self) -> dict[str, Any]:
        await self._load()
        return {"keys": list(self._public.values())}

    async def get(self, kid: str) -> dict[str, Any] | None:
        await self._load()
        if kid not in self._public and time.monotonic() - self._loaded_at > 1.0:
            await self._load(force=True)
        return self._public.get(kid)

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")
