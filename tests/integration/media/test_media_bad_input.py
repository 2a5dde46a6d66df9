"""Bad uploads: wrong type, too big, empty, bombs, traversal, duplicates — each a clear problem+json."""

from __future__ import annotations

import io
import uuid
import zipfile

import sqlalchemy as sa

from services.api.keys.models import DataKey
from services.api.media.models import Media

PNG_HEAD = b"\x89PNG\r\n\x1a\n"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x10\x00\x00\x00\x01\x00\x01\x00" + b"\x00" * 2000


def _problem(response, status: int) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_declared_type_mismatch_is_415_naming_both(env) -> None:  # noqa: ANN001
    body = _problem(await env.upload(b"%PDF-1.4\n" + b"x" * 500, "scan.png", "image/png"), 415)
    assert "image/png" in body["detail"] and "application/pdf" in body["detail"]
    assert body["declared"] == "image/png" and body["detected"] == "application/pdf"

    body = _problem(await env.upload(WAV, "voice.mp3", "audio/wav"), 415)  # the extension lies
    assert "audio/mpeg" in body["detail"] and "audio/wav" in body["detail"]

    body = _problem(await env.upload(b"MZ\x90\x00\x03" + bytes(range(256)) * 4, "setup.exe",
                                     "application/octet-stream"), 415)
    assert "unrecognised content" in body["detail"]


async def test_oversize_is_413_and_leaves_nothing_behind(env) -> None:  # noqa: ANN001
    async with env.ctx.session_factory() as session:
        keys_before = (await session.execute(sa.select(sa.func.count()).select_from(DataKey))).scalar_one()
    too_big = b"a" * (env.settings.max_media_bytes + 1)
    body = _problem(await env.upload(too_big, "big.txt", "text/plain"), 413)
    assert str(env.settings.max_media_bytes) in body["detail"]
    raw = env.ctx.extras["raw_blob_store"]
    assert [k async for k in raw.list(f"media/{env.project_id}/")] == []
    async with env.ctx.session_factory() as session:
        live_new = (await session.execute(sa.select(sa.func.count()).select_from(DataKey)
                                          .where(DataKey.destroyed_at.is_(None)))).scalar_one()
        total = (await session.execute(sa.select(sa.func.count()).select_from(DataKey))).scalar_one()
    assert live_new <= keys_before and total >= keys_before  # the aborted upload's key was shredded

    # a declared Content-Length over the cap is refused before a byte is read
    response = await env.client.post(f"/api/v1/projects/{env.project_id}/media",
                                      headers={**await env.manager(), "Content-Length": str(10 ** 10),
                                               "Content-Type": "multipart/form-data; boundary=x"},
                                      content=b"--x--\r\n")
    _problem(response, 413)


async def test_empty_file_and_malformed_bodies(env) -> None:  # noqa: ANN001
    assert "empty" in _problem(await env.upload(b"", "empty.txt", "text/plain"), 400)["detail"]
    response = await env.client.post(f"/api/v1/projects/{env.project_id}/media", headers=await env.manager(),
                                      json={"file": "not multipart"})
    assert "multipart" in _problem(response, 400)["detail"]
    response = await env.client.post(f"/api/v1/projects/{env.project_id}/media", headers=await env.manager(),
                                      files={"other": ("a.txt", b"hello")})
    assert "'file'" in _problem(response, 400)["detail"]


async def test_duplicate_upload_returns_the_existing_media(env) -> None:  # noqa: ANN001
    data = b"The same words, twice.\n" * 50
    first = await env.upload(data, "one.txt", "text/plain")
    second = await env.upload(data, "two.txt", "text/plain")
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.json()["duplicate"] is True
    async with env.ctx.session_factory() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(Media).where(
            Media.project_id == uuid.UUID(env.project_id)))).scalar_one()
    assert count == 1
    raw = env.ctx.extras["raw_blob_store"]
    assert len([k async for k in raw.list(f"media/{env.project_id}/")]) == 1  # the second copy was shredded
    # the same bytes in another project are not a duplicate there (hashes are keyed per project)
    other = await env.upload(data, "one.txt", "text/plain", project_id=env.other_project_id,
                             headers=await env.headers(roles=("org_admin",), org=env.other_org_id))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


async def _upload_zip(env, data: bytes, name: str = "batch.zip"):  # noqa: ANN001, ANN202
    return await env.client.post(f"/api/v1/projects/{env.project_id}/media:import-archive",
                                 files={"file": (name, data, "application/zip")}, headers=await env.manager())


async def test_zip_of_media_each_member_checked(env) -> None:  # noqa: ANN001
    archive = _zip({"docs/a.txt": b"first text file\n" * 10, "docs/b.pdf": b"%PDF-1.4\n" + b"p" * 300,
                    "bad/fake.png": b"%PDF-1.4 pretending", "docs/": b""})
    response = await _upload_zip(env, archive)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2 and report["failed"] == 1
    by_name = {item["name"]: item for item in report["items"]}
    assert by_name["docs/b.pdf"]["content_type"] == "application/pdf"
    assert by_name["bad/fake.png"]["error"]["status"] == 415
    again = (await _upload_zip(env, archive)).json()
    assert again["duplicates"] == 2 and again["created"] == 0


async def test_zip_bomb_is_rejected(env) -> None:  # noqa: ANN001
    bomb = _zip({"readme.txt": b"fine\n", "zeros.txt": b"0" * (1024 * 1024)})
    body = _problem(await _upload_zip(env, bomb), 413)
    assert "compression ratio" in body["detail"] and body["type"].endswith("decompression-bomb")
    async with env.ctx.session_factory() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(Media).where(
            Media.project_id == uuid.UUID(env.project_id)))).scalar_one()
    assert count == 0  # nothing from the bomb archive was kept


async def test_zip_member_traversal_is_rejected(env) -> None:  # noqa: ANN001
    for evil in ("../../etc/passwd.txt", "/abs/x.txt", "a/../../x.txt"):
        body = _problem(await _upload_zip(env, _zip({"ok.txt": b"fine text\n", evil: b"evil text\n"})), 400)
        assert "unsafe-file-name" in body["type"]


async def test_not_a_zip_is_415(env) -> None:  # noqa: ANN001
    body = _problem(await _upload_zip(env, b"plain text, not an archive\n"), 415)
    assert "application/zip" in body["detail"] or "text/plain" in body["detail"]


async def test_truncated_multipart_body_is_refused(env) -> None:  # noqa: ANN001
    body = (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\n" + b"this upload is cut off before its closing boundary " * 50)
    response = await env.client.post(f"/api/v1/projects/{env.project_id}/media", content=body,
                                      headers={**await env.manager(),
                                               "Content-Type": "multipart/form-data; boundary=BOUNDARY"})
    assert "truncated" in _problem(response, 400)["detail"]
    raw = env.ctx.extras["raw_blob_store"]
    assert [k async for k in raw.list(f"media/{env.project_id}/")] == []
