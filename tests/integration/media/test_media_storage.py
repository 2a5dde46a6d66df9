"""Upload → encrypted storage → streamed, ranged download; on S3 (moto) and on the local directory."""

from __future__ import annotations

import os

from services.api.media.models import Media
from shared.storage import read_all

PDF = b"%PDF-1.7\n" + os.urandom(300_000) + b"\n%%EOF\n"  # spans several 64 KiB envelope segments


async def test_round_trip_and_ranges(any_env) -> None:  # noqa: ANN001
    env = any_env
    created = await env.upload(PDF, "report.pdf", "application/pdf")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["content_type"] == "application/pdf" and body["size_bytes"] == len(PDF)
    assert body["filename"] == "report.pdf" and body["duplicate"] is False
    url = body["url"]
    headers = await env.manager()

    whole = await env.client.get(url, headers=headers)
    assert whole.status_code == 200 and whole.content == PDF
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(len(PDF))
    assert whole.headers["content-type"] == "application/pdf" and whole.headers["etag"].startswith('"')
    etag = whole.headers["etag"]

    cases = {
        "bytes=0-99": (0, 100),  # first bytes
        "bytes=70000-140000": (70000, 140001),  # middle, across a segment boundary
        "bytes=-1000": (len(PDF) - 1000, len(PDF)),  # suffix
        "bytes=299990-": (299990, len(PDF)),  # open-ended
    }
    for header, (start, stop) in cases.items():
        part = await env.client.get(url, headers={**headers, "Range": header})
        assert part.status_code == 206, (header, part.text)
        assert part.content == PDF[start:stop], header
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(PDF)}"
        assert part.headers["content-length"] == str(stop - start)

    unsatisfiable = await env.client.get(url, headers={**headers, "Range": f"bytes={len(PDF)}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(PDF)}"

    stale = await env.client.get(url, headers={**headers, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == PDF  # changed representation: whole body
    fresh = await env.client.get(url, headers={**headers, "Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == PDF[:10]

    head = await env.client.head(url, headers=headers)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PDF)) and head.content == b""

    reads = await env.events("audit.recorded", action="media.read", resource_id=body["id"], outcome="success")
    assert len(reads) == 8  # every GET audited (HEAD is not a read of the data)
    assert {r["details"].get("range") for r in reads} >= {"bytes=0-99", "bytes=-1000"}


async def test_bucket_holds_only_ciphertext(s3_env) -> None:  # noqa: ANN001
    marker = "QUORUM-PLAINTEXT-MARKER-7f3a9c"
    text = (f"Patient note. {marker}. " * 2000).encode()
    created = await s3_env.upload(text, "note.txt", "text/plain")
    assert created.status_code == 201, created.text
    raw = s3_env.ctx.extras["raw_blob_store"]
    keys = [key async for key in raw.list("")]
    assert keys, "nothing was stored"
    media_id = created.json()["id"]
    assert any(media_id in key for key in keys)
    for key in keys:
        stored = await read_all(raw.open_range(key))
        assert marker.encode() not in stored
        for window in (b"Patient note", marker[:12].encode()):
            assert window not in stored
    # and the api still serves the plaintext
    back = await s3_env.client.get(created.json()["url"], headers=await s3_env.manager())
    assert back.content == text


async def test_stored_under_generated_key_not_client_name(env) -> None:  # noqa: ANN001
    created = await env.upload(b"just text\n", "../../../../etc/cron.d/evil.txt", "text/plain")
    assert created.status_code == 400
    assert created.headers["content-type"] == "application/problem+json"
    assert "climbs out" in created.json()["detail"]

    created = await env.upload(b"just some text\n", "dir/inner name.txt", "text/plain")
    assert created.status_code == 201
    async with env.ctx.session_factory() as session:
        media = await session.get(Media, __import__("uuid").UUID(created.json()["id"]))
    assert media.filename == "inner name.txt"
    assert media.blob_key == f"media/{env.project_id}/{media.id}"
    got = await env.client.get(created.json()["url"], headers=await env.manager())
    assert "filename*=UTF-8''inner%20name.txt" in got.headers["content-disposition"]


async def test_upload_is_streamed_not_held_in_memory(infrastructure, tmp_path) -> None:  # noqa: ANN001
    """A 32 MiB upload from a file on disk: the server side never holds more than a few MiB of it."""
    import tracemalloc

    from tests.integration.media.conftest import _env, _settings

    size = 32 << 20
    source = tmp_path / "big.txt"
    with source.open("wb") as handle:
        block = (b"a line of plain text that repeats until the file is large enough"[:63] + b"\n") * (1 << 14)
        for _ in range(size // len(block)):
            handle.write(block)
    async for env in _env(_settings(infrastructure, tmp_path, max_media_bytes=64 << 20)):
        headers = await env.manager()
        tracemalloc.start()
        try:
            with source.open("rb") as handle:
                response = await env.client.post(f"/api/v1/projects/{env.project_id}/media", headers=headers,
                                                 files={"file": ("big.txt", handle, "text/plain")})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.text
        assert response.json()["size_bytes"] == size
        assert peak < 8 << 20, f"heap peaked at {peak / 2**20:.1f} MiB for a 32 MiB upload"


async def test_tampered_or_truncated_object_fails_loudly(env) -> None:  # noqa: ANN001
    from shared.storage import iter_bytes

    created = await env.upload(b"%PDF-1.4\n" + os.urandom(200_000), "t.pdf", "application/pdf")
    key = f"media/{env.project_id}/{created.json()['id']}"
    raw = env.ctx.extras["raw_blob_store"]
    stored = bytearray(await read_all(raw.open_range(key)))
    stored[200] ^= 0x01  # one bit in the first segment
    await raw.put(key, iter_bytes(bytes(stored)))
    response = await env.client.get(created.json()["url"], headers=await env.manager())
    assert response.status_code == 500 and response.json()["type"].endswith("media-ciphertext-invalid")
    stored[200] ^= 0x01
    await raw.put(key, iter_bytes(bytes(stored[:-5000])))  # truncated: the final segment is gone
    ranged = await env.client.get(created.json()["url"], headers={**await env.manager(), "Range": "bytes=-100"})
    assert ranged.status_code == 500 and ranged.json()["type"].endswith("media-ciphertext-invalid")
