"""A bulk import with S3 storage (moto over HTTP), as in production: the upload goes up in several parts and
is only ever ciphertext in the bucket, the tasks come out redacted, and nothing of the upload stays behind."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.api.app import create_app
from services.api.identity.deps import identity_of
from shared.storage import S3BlobStore
from tests.conftest import make_settings, running
from tests.integration.ingest.conftest import IngestEnv, _seed_orgs
from tests.integration.ingest.test_import import PII, PII_TEXT
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

MiB = 1024 * 1024


@pytest.fixture
async def ingest_s3(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[IngestEnv]:
    settings = make_settings(infrastructure, tmp_path, argon2_memory_kib=1024, import_workers=2,
                             import_resume_interval=3600, max_upload_bytes=32 * MiB,
                             s3_endpoint=infrastructure["s3_endpoint"], s3_access_key=S3_ACCESS_KEY,
                             s3_secret_key=S3_SECRET_KEY, s3_bucket=f"quorum-{secrets.token_hex(4)}",
                             s3_part_mib=5)
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        ctx = app.state.ctx
        ctx.extras["key_source"] = identity_of(ctx).keys
        org, other = await _seed_orgs(ctx)
        yield IngestEnv(client, ctx, org, other)


async def test_an_import_through_s3_stores_only_ciphertext_in_parts_and_leaves_nothing_behind(
        ingest_s3: IngestEnv) -> None:
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

    raw.delete = read_then_delete  # type: ignore[method-assign]
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
