"""Key management for the api service.

- `SqlDataKeyStore`: the `shared.crypto.DataKeyStore` protocol over table `data_keys`. Only wrapped keys
  are stored; `destroy` erases the wrapped bytes (the row stays as a tombstone: who/when, not what).
- `data_key_store(ctx)` / `keyring(ctx)`: the per-process instances (media, tasks and imports share them).
- Project secrets: one random secret per project, sealed under the key ring; the pseudonymisation HMAC key
  and the content-hash key are HKDF subkeys of it, so neither is usable outside its project.

Erasure and backups: a destroyed key is gone from the live table, but a database backup taken before the
erasure still holds its wrapped copy. Backups become unreadable for erased data once the KEK version that
wrapped it is retired (`quorum keys rotate` re-wraps live keys, then retire the old version) — so the KEK
retirement period is the bound on how long erased data stays recoverable from backups.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.keys.models import DataKey
from shared.crypto import (
    DataKeyNotFound,
    KeyDestroyed,
    KeyRing,
    WrappedDataKey,
    keyring_from_settings,
    new_data_key_id,
    unwrap_data_key,
    wrap_data_key,
)
from shared.crypto.datakeys import DEK_BYTES

REWRAP_BATCH = 1000


class SqlDataKeyStore:
    """`DataKeyStore` backed by PostgreSQL. Each call runs in its own transaction unless `session` is given
    (then it joins the caller's transaction, so a key and the row it protects commit together)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], keyring: KeyRing) -> None:
        self.session_factory = session_factory
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"SqlDataKeyStore(keyring={self.keyring!r})"

    async def create(self, scope: str, *, session: AsyncSession | None = None) -> tuple[str, bytes]:
        [(key_id, dek)] = await self.create_many([scope], session=session)
        return key_id, dek

    async def create_many(self, scopes: Sequence[str], *,
                          session: AsyncSession | None = None) -> list[tuple[str, bytes]]:
        if any(not s for s in scopes):
            raise ValueError("a data key needs a scope")
        out: list[tuple[str, bytes]] = []
        rows: list[dict[str, Any]] = []
        for scope in scopes:
            key_id = new_data_key_id()
            dek = secrets.token_bytes(DEK_BYTES)
            wrapped = wrap_data_key(self.keyring, dek, key_id)
            rows.append({"id": key_id, "scope": scope, "kek_version": wrapped.kek_version,
                         "wrapped": wrapped.wrapped})
            out.append((key_id, dek))
        if rows:
            await self._run(session, lambda s: s.execute(sa.insert(DataKey), rows))
        return out

    async def get(self, key_id: str, *, session: AsyncSession | None = None) -> bytes:
        [dek] = await self.get_many([key_id], session=session)
        return dek

    async def get_many(self, key_ids: Sequence[str], *, session: AsyncSession | None = None) -> list[bytes]:
        """Unwrapped keys in the order asked. `KeyDestroyed` / `DataKeyNotFound` for the first bad one."""
        async def load(s: AsyncSession) -> dict[str, Any]:
            result = await s.execute(sa.select(DataKey.id, DataKey.kek_version, DataKey.wrapped)
                                     .where(DataKey.id.in_(set(key_ids))))
            return {r.id: r for r in result}

        found = await self._run(session, load)
        out = []
        for key_id in key_ids:
            row = found.get(key_id)
            if row is None:
                raise DataKeyNotFound(key_id)
            if row.wrapped is None or row.kek_version is None:
                raise KeyDestroyed(key_id)
            out.append(unwrap_data_key(self.keyring, WrappedDataKey(row.kek_version, row.wrapped), key_id))
        return out

    async def destroy(self, key_id: str, *, session: AsyncSession | None = None) -> None:
        await self._run(session, lambda s: s.execute(
            sa.update(DataKey).where(DataKey.id == key_id, DataKey.destroyed_at.is_(None))
            .values(wrapped=None, kek_version=None, destroyed_at=sa.func.now())))

    async def destroy_scope(self, scope: str, *, session: AsyncSession | None = None) -> int:
        return await self.destroy_scopes([scope], session=session)

    async def destroy_scopes(self, scopes: Iterable[str], *, session: AsyncSession | None = None) -> int:
        scopes = list(scopes)
        if not scopes:
            return 0

        async def run(s: AsyncSession) -> int:
            result = await s.execute(
                sa.update(DataKey).where(DataKey.scope.in_(scopes), DataKey.destroyed_at.is_(None))
                .values(wrapped=None, kek_version=None, destroyed_at=sa.func.now()))
            return result.rowcount or 0

        return await self._run(session, run)

    async def rewrap(self, keyring: KeyRing | None = None, *, scope_prefix: str | None = None) -> int:
        """Re-wrap live keys not under the active KEK, in batches (each its own transaction); optionally
        only keys whose scope starts with `scope_prefix` (e.g. "task:" to rotate in stages)."""
        keyring = keyring or self.keyring
        active = keyring.active_version
        total = 0
        while True:
            async with self.session_factory() as s, s.begin():
                stmt = (sa.select(DataKey.id, DataKey.kek_version, DataKey.wrapped)
                        .where(DataKey.destroyed_at.is_(None), DataKey.kek_version != active)
                        .limit(REWRAP_BATCH).with_for_update(skip_locked=True))
                if scope_prefix:
                    stmt = stmt.where(DataKey.scope.startswith(scope_prefix, autoescape=True))
                rows = (await s.execute(stmt)).all()
                if not rows:
                    return total
                for row in rows:
                    dek = unwrap_data_key(keyring, WrappedDataKey(row.kek_version, row.wrapped), row.id)
                    wrapped = wrap_data_key(keyring, dek, row.id)
                    await s.execute(sa.update(DataKey).where(DataKey.id == row.id)
                                    .values(kek_version=wrapped.kek_version, wrapped=wrapped.wrapped))
                total += len(rows)

    async def _run(self, session: AsyncSession | None, fn):  # noqa: ANN001, ANN202
        if session is not None:
            return await fn(session)
        async with self.session_factory() as s, s.begin():
            return await fn(s)


# -- bulk path for imports: keys are generated and wrapped by import workers, then COPYed -------------

DATA_KEY_COLUMNS = ("id", "scope", "kek_version", "wrapped", "created_at")


@dataclass(frozen=True)
class WrapOnlyKeyRing:
    """What an import worker process gets: the wrapping subkey of the active KEK, nothing else. It quacks
    like `KeyRing` for `wrap_data_key` (active_version + derive(version, WRAP_PURPOSE))."""

    version: int
    wrap_key: bytes

    @property
    def active_version(self) -> int:
        return self.version

    def derive(self, version: int, purpose: bytes) -> bytes:
        from shared.crypto.datakeys import WRAP_PURPOSE

        if version != self.version or purpose != WRAP_PURPOSE:
            raise PermissionError("an import worker can only wrap under the active key version")
        return self.wrap_key

    def __repr__(self) -> str:
        return f"WrapOnlyKeyRing(version={self.version})"


def wrap_only(keyring: KeyRing) -> WrapOnlyKeyRing:
    from shared.crypto.datakeys import WRAP_PURPOSE

    version = keyring.active_version
    return WrapOnlyKeyRing(version, keyring.derive(version, WRAP_PURPOSE))


def new_wrapped_key(wrapper: WrapOnlyKeyRing | KeyRing) -> tuple[str, bytes, int, bytes]:
    """(key_id, dek, kek_version, wrapped) for a fresh key."""
    key_id = new_data_key_id()
    dek = secrets.token_bytes(DEK_BYTES)
    wrapped = wrap_data_key(wrapper, dek, key_id)  # type: ignore[arg-type]
    return key_id, dek, wrapped.kek_version, wrapped.wrapped


# -- per-process instances -----------------------------------------------------------------------------

def keyring(ctx: Any) -> KeyRing:
    ring = ctx.extras.get("keyring")
    if ring is None:
        ring = ctx.extras["keyring"] = keyring_from_settings(ctx.settings)
    return ring


def data_key_store(ctx: Any) -> SqlDataKeyStore:
    store = ctx.extras.get("data_key_store")
    if store is None:
        store = ctx.extras["data_key_store"] = SqlDataKeyStore(ctx.session_factory, keyring(ctx))
    return store


# -- project secrets --------------------------------------------------------------------------------

PROJECT_SECRET_BYTES = 32


def _project_aad(project_id: Any) -> str:
    return f"project:{project_id}:secret"


def new_project_secret(ring: KeyRing, project_id: Any) -> str:
    return ring.seal(secrets.token_bytes(PROJECT_SECRET_BYTES), _project_aad(project_id))


@dataclass(frozen=True)
class ProjectKeys:
    pseudonym_key: bytes
    content_hash_key: bytes

    def __repr__(self) -> str:
        return "ProjectKeys(<hidden>)"


def project_keys(ring: KeyRing, project_id: Any, sealed: str) -> ProjectKeys:
    secret = ring.unseal(sealed, _project_aad(project_id))

    def sub(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

    return ProjectKeys(sub(b"quorum/pii-pseudonym/v1"), sub(b"quorum/content-hash/v1"))


def now() -> datetime:
    return datetime.now(UTC)
