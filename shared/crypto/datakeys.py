"""Data keys (DEKs): one fresh 256-bit key per object, stored only wrapped by a KEK version.

Rotation re-wraps DEKs under the newest KEK (`rewrap`) — the data is never re-encrypted. Destroying a DEK
(one object, or every key of a scope such as a task, dataset or data subject) makes its ciphertext
unrecoverable wherever copies of it live, backups included: crypto-shredding.

The api service implements `DataKeyStore` over its own table (columns = `DataKeyRecord` fields);
`InMemoryDataKeyStore` is the reference implementation and the one tests use.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.errors import DataKeyNotFound, DecryptionError, KeyDestroyed
from shared.crypto.keyring import KeyRing

DEK_BYTES = 32
WRAP_PURPOSE = b"quorum/wrap/v1"
WRAP_NONCE_BYTES = 12
WRAPPED_BYTES = WRAP_NONCE_BYTES + DEK_BYTES + 16


@dataclass(frozen=True, slots=True)
class WrappedDataKey:
    kek_version: int
    wrapped: bytes  # nonce ‖ AES-256-GCM(dek) ‖ tag

    def __repr__(self) -> str:
        return f"WrappedDataKey(kek_version={self.kek_version}, wrapped=<{len(self.wrapped)} bytes>)"


@dataclass(frozen=True, slots=True)
class DataKeyRecord:
    key_id: str
    scope: str
    kek_version: int | None  # None once destroyed
    wrapped: bytes | None  # None once destroyed: the only copy of the key is gone
    created_at: datetime
    destroyed_at: datetime | None = None

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed_at else f"kek v{self.kek_version}"
        return f"DataKeyRecord({self.key_id!r}, scope={self.scope!r}, {state})"


def new_data_key_id() -> str:
    return "dk_" + secrets.token_hex(16)


def wrap_data_key(keyring: KeyRing, dek: bytes, key_id: str) -> WrappedDataKey:
    """Wrap `dek` under the active KEK; `key_id` is bound as AAD so wrapped keys cannot be swapped."""
    if len(dek) != DEK_BYTES:
        raise ValueError(f"data keys are {DEK_BYTES} bytes")
    version = keyring.active_version
    nonce = secrets.token_bytes(WRAP_NONCE_BYTES)
    sealed = AESGCM(keyring.derive(version, WRAP_PURPOSE)).encrypt(nonce, dek, _wrap_aad(version, key_id))
    return WrappedDataKey(version, nonce + sealed)


def unwrap_data_key(keyring: KeyRing, wrapped: WrappedDataKey, key_id: str) -> bytes:
    if len(wrapped.wrapped) != WRAPPED_BYTES:
        raise DecryptionError(f"wrapped data key {key_id!r} has the wrong length")
    key = keyring.derive(wrapped.kek_version, WRAP_PURPOSE)  # KeyVersionUnavailable if retired
    blob = wrapped.wrapped
    try:
        return AESGCM(key).decrypt(blob[:WRAP_NONCE_BYTES], blob[WRAP_NONCE_BYTES:],
                                   _wrap_aad(wrapped.kek_version, key_id))
    except InvalidTag:
        raise DecryptionError(f"wrapped data key {key_id!r} failed authentication") from None


def _wrap_aad(version: int, key_id: str) -> bytes:
    return f"quorum-dek/1|{version}|{key_id}".encode()


@runtime_checkable
class DataKeyStore(Protocol):
    async def create(self, scope: str) -> tuple[str, bytes]:
        """A fresh DEK recorded (wrapped) under `scope`; returns (key_id, dek)."""
        ...

    async def get(self, key_id: str) -> bytes:
        """The unwrapped DEK. `KeyDestroyed` if shredded, `DataKeyNotFound` if it never existed."""
        ...

    async def destroy(self, key_id: str) -> None:
        """Shred one key (idempotent)."""
        ...

    async def destroy_scope(self, scope: str) -> int:
        """Shred every live key of `scope`; returns how many."""
        ...

    async def rewrap(self, keyring: KeyRing | None = None) -> int:
        """Re-wrap every live key not under the active KEK version; returns how many."""
        ...


class InMemoryDataKeyStore:
    """Reference `DataKeyStore`: records live in a dict, holding only wrapped keys (never a DEK cache)."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._records: dict[str, DataKeyRecord] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"InMemoryDataKeyStore(keys={len(self._records)}, keyring={self.keyring!r})"

    async def create(self, scope: str) -> tuple[str, bytes]:
        if not scope:
            raise ValueError("a data key needs a scope")
        key_id = new_data_key_id()
        dek = secrets.token_bytes(DEK_BYTES)
        wrapped = wrap_data_key(self.keyring, dek, key_id)
        self._records[key_id] = DataKeyRecord(key_id, scope, wrapped.kek_version, wrapped.wrapped,
                                              datetime.now(UTC))
        return key_id, dek

    async def get(self, key_id: str) -> bytes:
        record = self._records.get(key_id)
        if record is None:
            raise DataKeyNotFound(key_id)
        if record.wrapped is None or record.kek_version is None:
            raise KeyDestroyed(key_id)
        return unwrap_data_key(self.keyring, WrappedDataKey(record.kek_version, record.wrapped), key_id)

    async def destroy(self, key_id: str) -> None:
        record = self._records.get(key_id)
        if record is not None and record.destroyed_at is None:
            self._records[key_id] = replace(record, kek_version=None, wrapped=None,
                                            destroyed_at=datetime.now(UTC))

    async def destroy_scope(self, scope: str) -> int:
        doomed = [r.key_id for r in self._records.values() if r.scope == scope and r.destroyed_at is None]
        for key_id in doomed:
            await self.destroy(key_id)
        return len(doomed)

    async def rewrap(self, keyring: KeyRing | None = None) -> int:
        keyring = keyring or self.keyring
        active = keyring.active_version
        count = 0
        async with self._lock:
            for key_id, record in list(self._records.items()):
                if record.wrapped is None or record.kek_version == active:
                    continue
                dek = unwrap_data_key(keyring, WrappedDataKey(record.kek_version, record.wrapped), key_id)
                wrapped = wrap_data_key(keyring, dek, key_id)
                self._records[key_id] = replace(record, kek_version=wrapped.kek_version, wrapped=wrapped.wrapped)
                count += 1
        return count

    def records(self) -> list[DataKeyRecord]:
        """Snapshot for inspection (tests, admin tooling)."""
        return list(self._records.values())
