"""Bad input: every case gets a clear answer (problem+json or per-row errors) and nothing is half-written."""

from __future__ import annotations

import gzip
import io
import json
import uuid
import zipfile

import sqlalchemy as sa

from services.api.imports.models import ImportOperation
from services.api.tasks.models import Task
from tests.integration.ingest.conftest import IngestEnv


async def _counts(ingest: IngestEnv, project_id: str) -> tuple[int, int, int]:
    """(tasks, live data keys of those tasks, tasks announced in tasks.imported events) for the project."""
    async with ingest.ctx.session_factory() as session:
        tasks = (await session.execute(sa.select(sa.func.count()).select_from(Task)
                                       .where(Task.project_id == uuid.UUID(project_id)))).scalar_one()
        keys = (await session.execute(sa.text(
            "SELECT count(*) FROM quorum_api.data_keys k JOIN quorum_api.tasks t ON t.key_id = k.id "
            "WHERE t.project_id = :p AND k.destroyed_at IS NULL"), {"p": project_id})).scalar_one()
        events = (await session.execute(sa.text(
            "SELECT coalesce(sum(jsonb_array_length(envelope::jsonb -> 'payload' -> 'task_ids')), 0) "
            "FROM quorum_api.outbox WHERE type = 'tasks.imported' "
            "AND (envelope::jsonb -> 'payload' ->> 'project_id') = :p"), {"p": project_id})).scalar_one()
    return tasks, keys, events


def _problem(r, status: int, *needles: str) -> None:  # noqa: ANN001
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for needle in needles:
        assert needle in r.json().get("detail", ""), (needle, r.json())


async def test_malformed_json_lines_are_reported_by_row_and_the_rest_imported(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    body = b'{"text": "good one"}\n{"text": "broken\n[1, 2]\n\n{"text": "good two"}\n{"txt": "wrong field"}\n' \
           b'{"text": 42}\n{"text": "   "}\n'
    op = await ingest.run_import(pid, body)
    assert op["status"] == "succeeded"
    assert op["counts"] == {"valid": 2, "created": 2, "duplicates": 0, "invalid": 5}
    errors = {e["row"]: e for e in op["errors"]}
    assert "malformed JSON" in errors[2]["message"]
    assert "must be a JSON object" in errors[3]["message"]
    assert errors[6]["field"] == "data.text" and "missing" in errors[6]["message"]  # required field
    assert errors[7]["field"] == "data.text" and "must be a string" in errors[7]["message"]
    assert errors[8]["field"] == "data.text"  # blank counts as missing
    assert await _counts(ingest, pid) == (2, 2, 2)


async def test_a_json_array_broken_midway_keeps_only_whole_earlier_tasks(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    good = ",".join(json.dumps({"data": {"text": f"task {i}"}}) for i in range(60))
    op = await ingest.run_import(pid, f'[{good}, {{"data": {{"text": "cut'.encode(), "application/json")
    assert op["status"] == "failed"
    assert "element 61" in op["error"] or "row 61" in op["error"]
    assert op["counts"]["created"] == 60 and op["counts"]["invalid"] == 1
    assert await _counts(ingest, pid) == (60, 60, 60)
    op = await ingest.run_import(pid, b'[{"text": "a"} {"text": "b"}]', "application/json")
    assert op["status"] == "failed" and "',' or ']' expected" in op["error"]


async def test_csv_rows_with_the_wrong_shape(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    body = b'text,source\n"a, quoted, field",web\n"multi\nline",mail\nonly-one-column\n,empty\nlast,row,extra\n'
    op = await ingest.run_import(pid, body, "text/csv")
    assert op["counts"]["created"] == 2
    errors = {e["row"]: e["message"] for e in op["errors"]}
    assert "expected 2 columns, got 1" in errors[4]
    assert "missing" in errors[5]
    assert "expected 2 columns, got 3" in errors[6]
    r = await ingest.start_import(pid, b"text,text\nx,y\n", "text/csv")
    op = await ingest.wait_import(r.json()["id"])
    assert op["status"] == "failed" and "header" in op["error"]
    op = await ingest.run_import(pid, b'text\n"never closed\n', "text/csv")
    assert op["status"] == "failed" and op["counts"]["created"] == 0


async def test_encodings(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    latin1 = "Café crème, señor".encode("latin-1")
    # undeclared Latin-1 is invalid UTF-8: a row error that says what to do
    op = await ingest.run_import(pid, b'{"text": "ok"}\n{"text": "' + latin1 + b'"}\n')
    assert op["counts"]["created"] == 1
    assert "not valid UTF-8" in op["errors"][0]["message"] and "charset" in op["errors"][0]["message"]
    # declared, it is read correctly
    op = await ingest.run_import(pid, b'{"text": "' + latin1 + b'"}\n', "application/x-ndjson; charset=latin-1")
    assert op["counts"]["created"] == 1
    # UTF-8 with a BOM (CSV as exported by spreadsheets), UTF-16 with its BOM
    op = await ingest.run_import(pid, b"\xef\xbb\xbftext\nwith bom\n", "text/csv")
    assert op["counts"]["created"] == 1, op
    op = await ingest.run_import(pid, "text\nutf sixteen\n".encode("utf-16"), "text/csv")
    assert op["counts"]["created"] == 1, op
    # invalid UTF-8 inside a JSON array element: that row only
    op = await ingest.run_import(pid, b'[{"text": "fine"}, {"text": "bad \xff byte"}, {"text": "also fine"}]',
                                 "application/json")
    assert op["counts"]["created"] == 2 and op["errors"][0]["row"] == 2
    r = await ingest.start_import(pid, b"{}", "application/x-ndjson; charset=ebcdic")
    _problem(r, 415, "charset")
    texts = {t["data"]["text"] for t in (await ingest.client.get(
        f"/api/v1/projects/{pid}/tasks", params={"include_data": "true"},
        headers=await ingest.manager())).json()["items"]}
    assert {"ok", "Café crème, señor", "with bom", "utf sixteen", "fine", "also fine"} <= texts


async def test_oversize_uploads_are_refused_with_413_and_leave_nothing(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    cap = ingest.ctx.settings.max_upload_bytes
    row = json.dumps({"text": "x" * 1000}).encode() + b"\n"
    big = row * (cap // len(row) + 10)
    r = await ingest.start_import(pid, big)  # declared length over the cap: refused before reading
    _problem(r, 413, "limit")

    async def streamed():  # noqa: ANN202 - no Content-Length: the cap is enforced while reading
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = await ingest.client.post(f"/api/v1/projects/{pid}/imports", content=streamed(),
                                 headers={"Content-Type": "application/x-ndjson", **await ingest.manager()})
    _problem(r, 413, "limit")
    assert await _counts(ingest, pid) == (0, 0, 0)
    async with ingest.ctx.session_factory() as session:
        ops = (await session.execute(sa.select(sa.func.count()).select_from(ImportOperation)
                                     .where(ImportOperation.project_id == uuid.UUID(pid)))).scalar_one()
    assert ops == 0
    assert [k async for k in ingest.ctx.extras["raw_blob_store"].list(f"imports/{pid}/")] == []


async def test_compressed_uploads_and_decompression_bombs(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    body = b"".join(json.dumps({"text": f"zipped {i}"}).encode() + b"\n" for i in range(20))
    op = await ingest.run_import(pid, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert op["counts"]["created"] == 20
    bomb = gzip.compress(b'{"text": "' + b"A" * (1024 * 1024) + b'"}\n', 9)  # ~1 KB inflating to 1 MB
    assert len(bomb) * 100 < ingest.ctx.settings.max_upload_bytes  # the ratio trips before the size cap
    r = await ingest.start_import(pid, bomb, headers={"Content-Encoding": "gzip"})
    _problem(r, 413, "bomb")
    big_bomb = gzip.compress(b'{"text": "' + b"A" * (64 * 1024 * 1024) + b'"}\n', 9)  # 64 MB inflated
    r = await ingest.start_import(pid, big_bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = await ingest.start_import(pid, b"\x1f\x8b\x08\x00garbage-not-gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    r = await ingest.start_import(pid, body, headers={"Content-Encoding": "br"})
    _problem(r, 415, "Content-Encoding")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../etc/tasks.jsonl", body)
    r = await ingest.start_import(pid, archive.getvalue(), "application/zip")
    _problem(r, 415, "archives")
    r = await ingest.start_import(pid, archive.getvalue(), "application/x-ndjson")  # lying about the type
    _problem(r, 415, "zip archive")
    assert (await _counts(ingest, pid))[0] == 20


async def test_content_that_does_not_match_its_declared_type(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    _problem(await ingest.start_import(pid, b"text\nhello\n", "application/json"), 415, "not a JSON array")
    _problem(await ingest.start_import(pid, b'[{"text": "x"}]', "text/csv"), 415, "looks like JSON")
    _problem(await ingest.start_import(pid, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "text/csv"), 415, "PNG")
    _problem(await ingest.start_import(pid, b"text\nx\n", "application/pdf"), 415, "Content-Type")
    _problem(await ingest.start_import(pid, b"x", "multipart/form-data; boundary=x"), 415, "multipart")
    r = await ingest.start_import(pid, b'{"text": "x"}\n', params={"format": "yaml"})
    _problem(r, 400, "format")


async def test_file_names_cannot_traverse(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    for name in ("../../etc/passwd", "/abs/tasks.jsonl", "..\\..\\win.ini", "a/../../b.jsonl", "nul\x00.jsonl"):
        r = await ingest.start_import(pid, b'{"text": "x"}\n', params={"filename": name})
        assert r.status_code == 400, (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    op = await ingest.run_import(pid, b'{"text": "x"}\n', params={"filename": "batch 1 (final).jsonl"})
    assert op["filename"] == "batch 1 (final).jsonl"
    assert (await _counts(ingest, pid))[0] == 1


async def test_import_permissions(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    r = await ingest.client.post(f"/api/v1/projects/{pid}/imports", content=b'{"text": "x"}\n',
                                 headers={"Content-Type": "application/x-ndjson", **await ingest.annotator(pid)})
    assert r.status_code == 403
    r = await ingest.client.post(f"/api/v1/projects/{pid}/imports", content=b'{"text": "x"}\n',
                                 headers={"Content-Type": "application/x-ndjson",
                                          **await ingest.manager(org=ingest.other_org_id)})
    assert r.status_code == 404
    r = await ingest.client.post(f"/api/v1/projects/{pid}/imports", content=b'{"text": "x"}\n',
                                 headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 401
    assert (await _counts(ingest, pid))[0] == 0
