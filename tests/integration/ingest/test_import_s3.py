"""Bulk imports with S3 storage (moto over HTTP), as in production: the upload goes up in several parts and is
only ever ciphertext in the bucket, the tasks come out redacted, nothing of the upload stays behind; an abandoned
import resumes from its upload in S3; S3 failing mid-upload is a 503 that leaves nothing behind."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.storage import S3BlobStore
from tests.integration.ingest.conftest import IngestEnv, ingest_env
from tests.integration.ingest.test_import import PII, PII_TEXT, check_an_abandoned_import_resumes
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, start_s3_process

MiB = 1024 * 1024


@pytest.fixture
async def ingest_s3(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[IngestEnv]:
    async for env in _ingest_env(infrastructure, tmp_path, infrastructure["s3_endpoint"]):
        yield env


def _ingest_env(infrastructure: dict[str, str], tmp_path: Path, endpoint: str) -> AsyncIterator[IngestEnv]:
    return ingest_env(infrastructure, tmp_path, max_upload_bytes=32 * MiB, s3_endpoint=endpoint,
                      s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY,
                      s3_bucket=f"quorum-{secrets.token_hex(4)}", s3_part_mib=5)


async def test_an_import_through_s3_stores_only_ciphertext_in_parts_and_leaves_nothing_behind(
        ingest_s3: IngestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    raw: S3BlobStore = ingest_s3.ctx.extras["raw_blob_store"]
    assert isinstance(raw, S3BlobStore)
    rows = [{"text": f"Ticket {i}. {PII_TEXT} " + "lorem ipsum " * 40} for i in range(13000)]
    body = json.dumps(rows).encode()
    assert len(body) > 2 * raw._part_size  # a multipart upload of at least three parts

    seen: dict[str, bytes] = {}  # each object of the bucket as stored, read before the import deletes it
    delete = raw.delete

    async def read_then_delete(key: str) -> None:
        seen[key] = b"".join([chunk async for chunk in raw.open_range(key)])
        await delete(key)

    monkeypatch.setattr(raw, "delete", read_then_delete)
    pid = await ingest_s3.create_project()
    op = await ingest_s3.run_import(pid, body, "application/json")
    assert op["status"] == "succeeded", op
    assert op["counts"]["created"] == 13000 and op["counts"]["invalid"] == 0 and op["progress"] == 1.0

    spools = [key for key in seen if key.startswith(f"imports/{pid}/")]
    assert len(spools) == 1 and len(seen[spools[0]]) > len(body)  # the whole upload, framed and sealed
    for needle in ["Ticket 12999", "lorem ipsum", *PII.values()]:
        assert needle.encode() not in seen[spools[0]], f"{needle!r} stored in the clear"
    assert [key async for key in raw.list(f"imports/{pid}/")] == []
    assert raw._client._list_multipart_uploads(raw.bucket).uploads == []

    annotator = await ingest_s3.annotator(pid)
    r = await ingest_s3.client.get(f"/api/v1/projects/{pid}/tasks",
                                   params={"include_data": "true", "limit": 500}, headers=annotator)
    tasks = r.json()["items"]
    assert len(tasks) == 500
    for task in tasks:
        assert task["data"]["text"].startswith("Ticket ")
        for entity, value in PII.items():
            assert value not in task["data"]["text"], f"{entity} reached an annotator"


async def test_an_abandoned_import_resumes_from_its_upload_in_s3(ingest_s3: IngestEnv) -> None:
    await check_an_abandoned_import_resumes(ingest_s3)


async def test_object_storage_going_away_mid_upload_answers_503_and_leaves_nothing(
        infrastructure: dict[str, str], tmp_path: Path) -> None:
    """S3 stops answering while an import is being uploaded (after its first part): the client gets a 503
    problem, and no operation, task, stored object or live data key is left of it."""
    endpoint, stop_s3 = start_s3_process()  # a process of its own, so that it can die
    try:
        async for env in _ingest_env(infrastructure, tmp_path, endpoint):
            pid = await env.create_project()
            row = json.dumps({"text": f"{PII_TEXT} " + "lorem ipsum " * 40}).encode()

            async def body() -> AsyncIterator[bytes]:
                sent = 0
                yield b"["
                for i in range(12_000):  # ~10 MiB: S3 dies once the first 5 MiB part is on its way
                    if sent > 6 * MiB:
                        stop_s3()  # (stops the process once; a no-op after)
                    sent += len(row) + 1
                    yield (b"," if i else b"") + row
                yield b"]"

            async with env.ctx.session_factory() as session:
                began = (await session.execute(sa.select(sa.func.clock_timestamp()))).scalar_one()
            r = await env.client.post(f"/api/v1/projects/{pid}/imports", content=body(),
                                      headers={"Content-Type": "application/json", **await env.manager()})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["type"].endswith("/storage-unavailable") and "Traceback" not in r.text

            async with env.ctx.session_factory() as session:
                operations = (await session.execute(sa.text(
                    "SELECT count(*) FROM quorum_api.import_operations WHERE project_id = :p"), {"p": pid})).scalar()
                tasks = (await session.execute(sa.text(
                    "SELECT count(*) FROM quorum_api.tasks WHERE project_id = :p"), {"p": pid})).scalar()
                live_keys = (await session.execute(sa.text(
                    "SELECT scope FROM quorum_api.data_keys WHERE scope LIKE 'import:%' AND created_at >= :t "
                    "AND destroyed_at IS NULL"), {"t": began})).scalars().all()
            assert (operations, tasks, live_keys) == (0, 0, [])
    finally:
        stop_s3()
