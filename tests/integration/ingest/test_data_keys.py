"""`SqlDataKeyStore`: the `DataKeyStore` protocol over PostgreSQL — create, get, shred, re-wrap."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

from services.api.keys.models import DataKey
from services.api.keys.service import SqlDataKeyStore
from shared.crypto import DataKeyNotFound, DataKeyStore, KeyDestroyed, KeyRing
from tests.integration.ingest.conftest import IngestEnv


async def test_sql_data_key_store_lifecycle_and_rotation(ingest: IngestEnv) -> None:
    v1 = secrets.token_bytes(32)
    store = SqlDataKeyStore(ingest.ctx.session_factory, KeyRing({1: v1}))
    assert isinstance(store, DataKeyStore)
    mine = f"keytest-{secrets.token_hex(6)}:"  # the suite shares one database; rotate only this test's keys
    scope = f"{mine}task"
    (a, dek_a), (b, dek_b) = await store.create_many([scope, scope])
    c, dek_c = await store.create(f"{mine}other")
    assert await store.get(a) == dek_a and await store.get(c) == dek_c
    async with ingest.ctx.session_factory() as session:
        stored = (await session.execute(sa.select(DataKey.wrapped).where(DataKey.id == a))).scalar_one()
    assert dek_a not in stored  # only the wrapped key is stored

    rotated = KeyRing({1: v1, 2: secrets.token_bytes(32)})
    rewrapped = await SqlDataKeyStore(ingest.ctx.session_factory, rotated).rewrap(scope_prefix=mine)
    assert rewrapped == 3
    only_v2 = SqlDataKeyStore(ingest.ctx.session_factory, KeyRing({2: rotated._keys[2]}))
    assert await only_v2.get(a) == dek_a  # readable without the retired version: re-wrapped, not re-encrypted

    assert await only_v2.destroy_scope(scope) == 2
    assert await only_v2.destroy_scope(scope) == 0  # idempotent
    with pytest.raises(KeyDestroyed):
        await only_v2.get(a)
    with pytest.raises(KeyDestroyed):
        await only_v2.get(b)
    assert await only_v2.get(c) == dek_c
    await only_v2.destroy(c)
    with pytest.raises(KeyDestroyed):
        await only_v2.get(c)
    with pytest.raises(DataKeyNotFound):
        await only_v2.get("dk_" + "0" * 32)
    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(DataKey).where(DataKey.id.in_([a, b, c])))).scalars().all()
    assert all(r.wrapped is None and r.kek_version is None and r.destroyed_at for r in rows)
