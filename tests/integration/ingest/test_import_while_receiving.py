"""JSON and JSON Lines uploads of known length are imported while they arrive (services/api/imports/feed.py):
tasks exist before the body has ended; an upload that breaks off fails its operation there, leaving whole
tasks only and its Idempotency-Key free for the next attempt, which imports the rest."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import sqlalchemy as sa

from services.api.imports.models import ImportOperation
from services.api.imports.service import INTERRUPTED, resume_abandoned
from services.api.tasks.models import Task
from tests.conftest import wait_until
from tests.integration.ingest.conftest import IngestEnv


def _rows(start: int, stop: int) -> bytes:
    return "".join(json.dumps({"text": f"row {i} " + "w" * 100}) + "\n" for i in range(start, stop)).encode()


async def _operations(ingest: IngestEnv, pid: str) -> list[Any]:
    async with ingest.ctx.session_factory() as session:
        return list((await session.execute(sa.select(ImportOperation).where(
            ImportOperation.project_id == uuid.UUID(pid)).order_by(ImportOperation.created_at))).scalars())


async def _task_count(ingest: IngestEnv, pid: str) -> int:
    async with ingest.ctx.session_factory() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(Task)
                                      .where(Task.project_id == uuid.UUID(pid)))).scalar_one()


async def _upload(ingest: IngestEnv, pid: str, first: bytes, rest: bytes, go_on: asyncio.Event, *,
                  fail: bool = False, key: str | None = None) -> Any:
    """POST `first`, then, once `go_on` is set, `rest` (or an error instead of it)."""
    async def body():  # noqa: ANN202
        yield first
        await go_on.wait()
        if fail:
            raise ConnectionResetError("the client went away")
        yield rest

    headers = {"Content-Type": "application/x-ndjson", "Content-Length": str(len(first) + len(rest)),
               **await ingest.manager()}
    if key:
        headers["Idempotency-Key"] = key
    return await ingest.client.post(f"/api/v1/projects/{pid}/imports", content=body(), headers=headers)


async def test_tasks_are_imported_while_the_upload_arrives(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    first, rest = _rows(0, 200), _rows(200, 260)
    go_on = asyncio.Event()
    post = asyncio.create_task(_upload(ingest, pid, first, rest, go_on))

    async def imported_while_receiving() -> bool | None:
        ops = await _operations(ingest, pid)
        if ops and ops[0].status == "receiving" and ops[0].rows_committed > 0:
            return True
        return None

    await wait_until(imported_while_receiving, timeout=30, interval=0.02)
    assert await _task_count(ingest, pid) > 0  # tasks exist while the body is still arriving
    headers = await ingest.manager()
    r = await ingest.client.get(f"/api/v1/imports/{(await _operations(ingest, pid))[0].id}", headers=headers)
    assert r.json()["status"] == "receiving" and 0 < r.json()["progress"] < 1
    go_on.set()
    r = await post
    assert r.status_code == 202, r.text
    op = await ingest.wait_import(r.json()["id"])
    assert op["status"] == "succeeded" and op["counts"]["created"] == 260 and op["rows_processed"] == 260
    assert [k async for k in ingest.ctx.extras["raw_blob_store"].list(f"imports/{pid}/")] == []


async def test_an_upload_that_breaks_off_fails_its_import_there_and_frees_its_key(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    first, rest = _rows(0, 200), _rows(200, 300)
    go_on = asyncio.Event()
    post = asyncio.create_task(_upload(ingest, pid, first, rest, go_on, fail=True, key="upload-1"))

    async def some_committed() -> bool | None:
        ops = await _operations(ingest, pid)
        return True if ops and ops[0].rows_committed > 0 else None

    await wait_until(some_committed, timeout=30, interval=0.02)
    go_on.set()
    try:
        await post
    except Exception:  # noqa: BLE001 - the test client passes the body's error on
        pass

    async def ended() -> Any:
        ops = await _operations(ingest, pid)
        return ops[0] if ops and ops[0].status in ("succeeded", "failed") else None

    op = await wait_until(ended, timeout=30, interval=0.02)
    assert op.status == "failed" and op.error == INTERRUPTED and op.idempotency_key is None
    committed = await _task_count(ingest, pid)
    assert 0 < committed <= 200 and committed == op.created_count  # whole tasks of the part that arrived
    assert [k async for k in ingest.ctx.extras["raw_blob_store"].list(f"imports/{pid}/")] == []

    # the same key again: a new operation, which imports the rest and skips what the first one imported
    r = await ingest.start_import(pid, first + rest, headers={"Idempotency-Key": "upload-1"})
    assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers, r.text
    again = await ingest.wait_import(r.json()["id"])
    assert again["status"] == "succeeded"
    assert again["counts"]["duplicates"] == committed and again["counts"]["created"] == 300 - committed
    assert await _task_count(ingest, pid) == 300


async def test_content_checks_come_before_the_operation_is_recorded(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    r = await ingest.start_import(pid, b"not json at all, but long enough to be sniffed " * 4, "application/json")
    assert r.status_code == 415, r.text
    assert await _operations(ingest, pid) == []


async def test_an_import_whose_receiving_server_stopped_fails(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    op_id = uuid.uuid4()
    async with ingest.ctx.session_factory() as session, session.begin():
        project_org = (await session.execute(sa.text("SELECT org_id FROM quorum_api.projects WHERE id = :p"),
                                             {"p": pid})).scalar_one()
        session.add(ImportOperation(id=op_id, project_id=uuid.UUID(pid), org_id=project_org, created_by="x",
                                    status="receiving", format="jsonl", encoding="utf-8", idempotency_key="k-1",
                                    spool_key=f"imports/{pid}/{op_id}", bytes_received=10,
                                    lease_owner="gone", lease_until=sa.func.now() - sa.text("interval '1 minute'")))
    await resume_abandoned(ingest.ctx)
    op = (await _operations(ingest, pid))[0]
    assert op.status == "failed" and op.error == INTERRUPTED and op.idempotency_key is None and op.finished_at
