"""Media by reference: every object under bucket/prefix streams through the same pipeline (moto S3)."""

from __future__ import annotations

import secrets

import boto3
import pytest

from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

PDF = b"%PDF-1.4\n" + b"scanned page\n" * 200


@pytest.fixture
def source_bucket(s3_env):  # noqa: ANN001, ANN201
    client = boto3.client("s3", endpoint_url=s3_env.settings.s3_endpoint, aws_access_key_id=S3_ACCESS_KEY,
                          aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")
    name = f"customer-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name)
    objects = {
        "batch1/notes/a.txt": b"first note from the customer\n" * 20,
        "batch1/scan.pdf": PDF,
        "batch1/fake.png": b"%PDF-1.4 a pdf pretending to be a png",
        "batch1/../escape.txt": b"climbing out\n",
        "batch1/empty.txt": b"",
        "other/skip.txt": b"not under the prefix\n",
    }
    for key, body in objects.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return name


async def _import(env, body: dict, headers: dict | None = None):  # noqa: ANN001, ANN202
    return await env.client.post(f"/api/v1/projects/{env.project_id}/media:import-from-bucket", json=body,
                                 headers=headers or await env.manager())


async def test_import_from_bucket_streams_each_object(s3_env, source_bucket: str) -> None:  # noqa: ANN001
    env = s3_env
    existing = await env.upload(PDF, "already.pdf", "application/pdf")
    response = await _import(env, {"bucket": source_bucket, "prefix": "batch1/"})
    assert response.status_code == 200, response.text
    report = response.json()
    items = {item["name"]: item for item in report["items"]}
    assert set(items) == {"batch1/notes/a.txt", "batch1/scan.pdf", "batch1/fake.png", "batch1/../escape.txt",
                          "batch1/empty.txt"}
    assert items["batch1/notes/a.txt"]["content_type"] == "text/plain" and items["batch1/notes/a.txt"]["media_id"]
    assert items["batch1/scan.pdf"]["duplicate"] and items["batch1/scan.pdf"]["media_id"] == existing.json()["id"]
    assert items["batch1/fake.png"]["error"]["status"] == 415
    assert items["batch1/../escape.txt"]["error"]["status"] == 400
    assert "climbs out" in items["batch1/../escape.txt"]["error"]["detail"]
    assert items["batch1/empty.txt"]["error"]["status"] == 400
    assert report["created"] == 1 and report["duplicates"] == 1 and report["failed"] == 3

    note = await env.client.get(f"/api/v1/media/{items['batch1/notes/a.txt']['media_id']}",
                                headers=await env.manager())
    assert note.content == b"first note from the customer\n" * 20
    again = (await _import(env, {"bucket": source_bucket, "prefix": "batch1/notes/"})).json()
    assert again["duplicates"] == 1 and again["created"] == 0

    limited = (await _import(env, {"bucket": source_bucket, "prefix": "", "max_objects": 2})).json()
    assert limited["truncated"] is True and len(limited["items"]) == 2


async def test_import_from_bucket_refusals(s3_env, source_bucket: str) -> None:  # noqa: ANN001
    env = s3_env
    own = await _import(env, {"bucket": env.settings.s3_bucket, "prefix": ""})
    assert own.status_code == 403 and "own storage bucket" in own.json()["detail"]
    assert (await _import(env, {"bucket": "Not_A_Bucket!", "prefix": ""})).status_code in (400, 422)
    traversal = await _import(env, {"bucket": source_bucket, "prefix": "../secrets/"})
    assert traversal.status_code == 400
    missing = await _import(env, {"bucket": "no-such-bucket-here", "prefix": ""})
    assert missing.status_code == 404 and "no-such-bucket-here" in missing.json()["detail"]
    annotator = await env.headers(proj={env.project_id: "annotator"})
    assert (await _import(env, {"bucket": source_bucket, "prefix": ""}, annotator)).status_code == 403
    # an allowlist, when configured, is enforced
    env.ctx.settings.media_import_buckets = ["only-this-one"]
    try:
        refused = await _import(env, {"bucket": source_bucket, "prefix": "batch1/"})
        assert refused.status_code == 403 and "allowlist" in refused.json()["detail"]
    finally:
        env.ctx.settings.media_import_buckets = []
