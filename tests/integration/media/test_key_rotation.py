"""`quorum keys rotate`: re-wrap and re-seal onto a new KEK, never re-encrypt; everything stays readable;
the old version can then be retired, which also voids pre-rotation backups of wrapped keys."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from services.api.keys.models import DataKey
from services.api.keys.service import data_key_store
from services.api.rotation import service as rotation
from shared.crypto import KeyRing, KeyRingError, KeyVersionUnavailable, WrappedDataKey, unwrap_data_key
from shared.storage import read_all
from tests.conftest import ROOT, _drop_database, _with_database
from tests.integration.media.conftest import MediaEnv, _env, _settings
from tests.integration.media.test_erasure import make_task


@pytest.fixture
async def isolated_env(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[MediaEnv]:
    """A database of its own: rotation touches every key in the database, and the rest of the suite's
    keys were wrapped by other tests' key rings."""
    from shared.embedded import create_database
    from shared.migrations import upgrade_all

    name = f"quorum_rot_{os.getpid()}_{secrets.token_hex(3)}"
    await asyncio.to_thread(create_database, infrastructure["admin_url"], name)
    url = _with_database(infrastructure["admin_url"], name)
    try:
        await asyncio.to_thread(upgrade_all, url)
        async for value in _env(_settings(infrastructure, tmp_path, database_url=url)):
            yield value
    finally:
        await asyncio.to_thread(_drop_database, infrastructure["admin_url"], name)


def quorum_keys(env: MediaEnv, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "QUORUM_DATABASE_URL": env.settings.database_url,
                   "QUORUM_KEYRING_FILE": str(env.settings.keyring_file), "QUORUM_DATA_DIR": str(env.settings.data_dir)}
    environment.pop("QUORUM_KEYRING", None)
    return subprocess.run([sys.executable, "-m", "shared.cli", "keys", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


async def test_rotation_rewraps_reseals_and_keeps_everything_readable(isolated_env: MediaEnv) -> None:
    env = isolated_env
    admin = await env.headers(roles=("org_admin",))  # also creates the identity signing key (sealed)
    files = {f"doc{i}.pdf": b"%PDF-1.4\n" + os.urandom(150_000 + i) for i in range(3)}
    media = {}
    for name, data in files.items():
        created = await env.upload(data, name, "application/pdf")
        assert created.status_code == 201, created.text
        media[created.json()["id"]] = data
    task_id = await make_task(env, "a task written before the rotation")
    some_id = next(iter(media))
    old_link = (await env.client.post(f"/api/v1/media/{some_id}/links", headers=admin, json={})).json()

    raw = env.ctx.extras["raw_blob_store"]
    stored_before = {key: await read_all(raw.open_range(key)) async for key in raw.list("media/")}
    async with env.ctx.session_factory() as session:
        backup = {r.id: (r.kek_version, bytes(r.wrapped)) for r in (await session.execute(
            sa.select(DataKey).where(DataKey.destroyed_at.is_(None)))).scalars()}
    assert backup and {v for v, _ in backup.values()} == {1}

    with pytest.raises(KeyRingError):  # the active version cannot be retired
        await rotation.retire(env.ctx.session_factory, KeyRing.load_or_create(env.settings.keyring_file), 1)

    result = quorum_keys(env, "rotate")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["previous_version"] == 1 and report["active_version"] == 2
    assert report["data_keys_rewrapped"] == len(backup)
    assert report["secrets_resealed"]["projects.secret_sealed"] >= 2
    assert report["secrets_resealed"]["signing_keys.private_key_sealed"] >= 1

    status = await rotation.status(env.ctx.session_factory, KeyRing.load_or_create(env.settings.keyring_file))
    assert status.active_version == 2 and status.live_data_keys_by_version == {2: len(backup)}
    assert all(set(counts) <= {2} for counts in status.sealed_by_version.values())
    assert status.retireable() == [1]

    # never re-encrypted: every stored object is byte-for-byte what it was
    assert {key: await read_all(raw.open_range(key)) async for key in raw.list("media/")} == stored_before

    async def everything_readable(headers: dict[str, str]) -> None:
        for media_id, data in media.items():
            got = await env.client.get(f"/api/v1/media/{media_id}", headers=headers)
            assert got.status_code == 200 and got.content == data
            part = await env.client.get(f"/api/v1/media/{media_id}", headers={**headers, "Range": "bytes=-10"})
            assert part.status_code == 206 and part.content == data[-10:]
        task = await env.client.get(f"/api/v1/tasks/{task_id}", headers=headers)
        assert task.status_code == 200, task.text

    await everything_readable(admin)
    parts = urlsplit(old_link["url"])
    assert (await env.client.get(f"{parts.path}?{parts.query}")).status_code == 200  # v1 still held

    # a process that still wraps under v1 would block retirement; after the rewrap nothing does
    retired = quorum_keys(env, "retire", "1")
    assert retired.returncode == 0, retired.stderr
    ring = KeyRing.load_or_create(env.settings.keyring_file)
    assert ring.versions == (2,)

    # a fresh process holding only v2 reads everything; a new token is signed with the resealed key
    env.ctx.extras["keyring"].reload()
    await everything_readable(await env.headers(roles=("org_admin",)))
    assert (await env.client.get(f"{parts.path}?{parts.query}")).status_code == 403  # signed under retired v1

    # a database backup from before the rotation holds v1-wrapped keys: useless once v1 is retired
    key_id, (version, wrapped) = next(iter(backup.items()))
    with pytest.raises(KeyVersionUnavailable):
        unwrap_data_key(ring, WrappedDataKey(version, wrapped), key_id)
    assert await data_key_store(env.ctx).get(key_id)  # the live (re-wrapped) key still opens


async def test_retire_refuses_while_anything_still_uses_the_version(isolated_env: MediaEnv) -> None:
    env = isolated_env
    assert (await env.upload(b"some text to protect\n", "a.txt", "text/plain")).status_code == 201
    ring = KeyRing.load_or_create(env.settings.keyring_file)
    ring.rotate()  # a new version exists, but nothing was re-wrapped yet
    with pytest.raises(KeyRingError, match="still protects"):
        await rotation.retire(env.ctx.session_factory, ring, 1)
    result = quorum_keys(env, "retire", "1")
    assert result.returncode == 1 and "still protects" in result.stderr
    shown = json.loads(quorum_keys(env, "status").stdout)
    assert shown["versions"] == [1, 2] and shown["live_data_keys_by_version"] == {"1": 1}
    assert shown["retireable"] == []
    report = await rotation.rotate(env.ctx.session_factory, ring, add_version=False)
    assert report.active_version == 2 and report.data_keys_rewrapped >= 1
    await rotation.retire(env.ctx.session_factory, ring, 1)
    assert ring.versions == (2,)
