"""Key rotation: a new KEK version, every live data key re-wrapped, every sealed secret re-sealed.

Blobs and task ciphertext are never re-encrypted: they are protected by data keys, and only the wrapping
of those keys changes. After a rotation nothing live depends on the old version, so it can be retired
(`retire`), which also makes database backups taken before an erasure useless for the erased data.

Sealed secrets live in several domains' tables; `SEALED_COLUMNS` names each column with the AAD its
domain seals it under. A domain that adds a sealed column adds an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.api.keys.models import DataKey
from services.api.keys.service import SqlDataKeyStore
from shared.crypto import KeyRing, KeyRingError, reseal, sealed_version
from shared.crypto.errors import DecryptionError

SCHEMA = "quorum_api"
BATCH = 500


@dataclass(frozen=True)
class SealedColumn:
    table: str
    id_column: str
    column: str
    aad: Callable[[Any], str]  # row id → the AAD the owning domain seals under

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


SEALED_COLUMNS: list[SealedColumn] = [
    SealedColumn("projects", "id", "secret_sealed", lambda pid: f"project:{pid}:secret"),
    SealedColumn("signing_keys", "kid", "private_key_sealed", lambda kid: f"signing-key:{kid}"),
    SealedColumn("users", "id", "totp_secret_sealed", lambda uid: f"user:{uid}:totp"),
    SealedColumn("users", "id", "totp_pending_sealed", lambda uid: f"user:{uid}:totp:pending"),
]


@dataclass
class RotationReport:
    previous_version: int
    active_version: int
    added_version: bool
    data_keys_rewrapped: int = 0
    secrets_resealed: dict[str, int] = field(default_factory=dict)
    secrets_failed: dict[str, int] = field(default_factory=dict)


@dataclass
class KeyStatus:
    versions: list[int]
    active_version: int
    source: str
    live_data_keys_by_version: dict[int, int]
    destroyed_data_keys: int
    sealed_by_version: dict[str, dict[int, int]]

    def in_use(self, version: int) -> int:
        return self.live_data_keys_by_version.get(version, 0) + sum(
            counts.get(version, 0) for counts in self.sealed_by_version.values())

    def retireable(self) -> list[int]:
        return [v for v in self.versions if v != self.active_version and self.in_use(v) == 0]


def _table(column: SealedColumn) -> sa.TableClause:
    return sa.table(column.table, sa.column(column.id_column), sa.column(column.column), schema=SCHEMA)


async def _existing_tables(session_factory: async_sessionmaker) -> set[str]:
    async with session_factory() as session:
        rows = await session.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema"), {"schema": SCHEMA})
        return {r[0] for r in rows}


async def reseal_column(session_factory: async_sessionmaker, ring: KeyRing, column: SealedColumn
                        ) -> tuple[int, int]:
    """Re-seal every token of `column` not under the active version. Returns (resealed, failed)."""
    table = _table(column)
    id_col, value_col = table.c[column.id_column], table.c[column.column]
    active = ring.active_version
    resealed = failed = 0
    after: Any = None
    while True:
        async with session_factory() as session, session.begin():
            query = sa.select(id_col, value_col).where(value_col.is_not(None)).order_by(id_col).limit(BATCH)
            if after is not None:
                query = query.where(id_col > after)
            rows = (await session.execute(query.with_for_update(skip_locked=True))).all()
            if not rows:
                return resealed, failed
            for row_id, token in rows:
                try:
                    if sealed_version(token) == active:
                        continue
                    fresh = reseal(ring, token, column.aad(row_id))
                except DecryptionError:
                    failed += 1  # left as it is: reported, never overwritten with something unreadable
                    continue
                await session.execute(sa.update(table).where(id_col == row_id, value_col == token)
                                      .values({column.column: fresh}))
                resealed += 1
            after = rows[-1][0]


async def rotate(session_factory: async_sessionmaker, ring: KeyRing, *, add_version: bool = True
                 ) -> RotationReport:
    """Add a KEK version (file-backed rings; a secret-backed ring is rotated by editing QUORUM_KEYRING),
    then move every data key and sealed secret onto the active version."""
    previous = ring.active_version
    added = False
    if add_version:
        if ring.path is None:
            raise KeyRingError("the key ring comes from QUORUM_KEYRING: add a higher version there, restart, "
                               "then run `quorum keys rotate --no-new-version` to re-wrap onto it")
        ring.rotate()
        added = True
    report = RotationReport(previous_version=previous, active_version=ring.active_version, added_version=added)
    report.data_keys_rewrapped = await SqlDataKeyStore(session_factory, ring).rewrap(ring)
    tables = await _existing_tables(session_factory)
    for column in SEALED_COLUMNS:
        if column.table not in tables:
            continue
        done, failed = await reseal_column(session_factory, ring, column)
        report.secrets_resealed[column.label] = done
        if failed:
            report.secrets_failed[column.label] = failed
    return report


async def status(session_factory: async_sessionmaker, ring: KeyRing) -> KeyStatus:
    async with session_factory() as session:
        live = dict((await session.execute(
            sa.select(DataKey.kek_version, sa.func.count()).where(DataKey.destroyed_at.is_(None))
            .group_by(DataKey.kek_version))).all())
        destroyed = (await session.execute(sa.select(sa.func.count()).select_from(DataKey)
                                           .where(DataKey.destroyed_at.is_not(None)))).scalar_one()
    tables = await _existing_tables(session_factory)
    sealed: dict[str, dict[int, int]] = {}
    for column in SEALED_COLUMNS:
        if column.table not in tables:
            continue
        table = _table(column)
        counts: dict[int, int] = {}
        async with session_factory() as session:
            tokens = (await session.execute(sa.select(table.c[column.column])
                                            .where(table.c[column.column].is_not(None)))).scalars()
            for token in tokens:
                try:
                    version = sealed_version(token)
                except DecryptionError:
                    version = 0  # not a sealed token at all: shown as version 0
                counts[version] = counts.get(version, 0) + 1
        sealed[column.label] = counts
    return KeyStatus(versions=list(ring.versions), active_version=ring.active_version,
                     source=f"file {ring.path}" if ring.path else "QUORUM_KEYRING secret",
                     live_data_keys_by_version={int(k): int(v) for k, v in live.items()},
                     destroyed_data_keys=int(destroyed), sealed_by_version=sealed)


async def retire(session_factory: async_sessionmaker, ring: KeyRing, version: int) -> None:
    """Erase KEK `version` for good — refused while anything live is still wrapped or sealed under it."""
    current = await status(session_factory, ring)
    in_use = current.in_use(version)
    if in_use:
        raise KeyRingError(f"key version {version} still protects {in_use} live key(s) or secret(s); "
                           "run `quorum keys rotate` first (and make sure every api process has reloaded)")
    ring.retire(version)
