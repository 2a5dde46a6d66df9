"""Task rows: time-ordered ids, and the statement-level reference to projects (migration 0006) holding like the
foreign key it replaced."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.api.imports.pipeline import task_uuid
from services.api.projects.models import Project
from services.api.tasks.models import Task, TaskPseudonym
from tests.integration.ingest.conftest import IngestEnv


def test_task_ids_are_uuid7_ordered_by_time() -> None:
    ids = [task_uuid(os.urandom(16), unix_ms=1_700_000_000_000 + i) for i in range(50)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids)
    assert int(ids[0].hex[:12], 16) == 1_700_000_000_000
    # the random part is random: the same millisecond gives different ids
    assert len({task_uuid(os.urandom(16), unix_ms=5) for _ in range(100)}) == 100


async def _import(ingest: IngestEnv, n: int = 5, pii: bool = True) -> str:
    pid = await ingest.create_project(pii={"enabled": pii, "default": "pseudonymise"})
    body = ("\n".join(json.dumps({"text": f"row {i} from jane.doe{i}@example.org"}) for i in range(n)) + "\n").encode()
    result = await ingest.run_import(pid, body)
    assert result["counts"]["created"] == n, result
    return pid


async def test_imported_tasks_get_uuid7_ids(ingest: IngestEnv) -> None:
    pid = await _import(ingest)
    async with ingest.ctx.session_factory() as session:
        ids = (await session.execute(sa.select(Task.id).where(Task.project_id == uuid.UUID(pid)))).scalars().all()
    assert len(ids) == 5 and all(i.version == 7 for i in ids)


async def test_a_task_row_naming_no_project_is_rejected(ingest: IngestEnv) -> None:
    pid = await _import(ingest, n=1)
    async with ingest.ctx.session_factory() as session:
        task = (await session.execute(sa.select(Task).where(Task.project_id == uuid.UUID(pid)))).scalar_one()
    columns = ("org_id", "schema_version", "key_id", "data_enc", "pii_counts", "has_predictions")
    row = {c: getattr(task, c) for c in columns}
    missing = uuid.uuid4()
    for statement in (
        sa.insert(Task).values(id=uuid.uuid4(), project_id=missing, content_hash=b"h" * 32, **row),
        sa.update(Task).where(Task.id == task.id).values(project_id=missing),
    ):
        async with ingest.ctx.session_factory() as session:
            with pytest.raises(IntegrityError) as caught:
                async with session.begin():
                    await session.execute(statement)
        assert "tasks_project_id_fkey" in str(caught.value) and str(missing) in str(caught.value)
    async with ingest.ctx.session_factory() as session:  # nothing half-written
        kept = (await session.execute(sa.select(Task.project_id).where(Task.id == task.id))).scalar_one()
        assert kept == task.project_id
        assert (await session.execute(sa.select(sa.func.count()).select_from(Task)
                                      .where(Task.project_id == missing))).scalar_one() == 0


async def test_a_multi_row_statement_fails_whole_when_one_row_names_no_project(ingest: IngestEnv) -> None:
    pid = await _import(ingest, n=1)
    async with ingest.ctx.session_factory() as session:
        task = (await session.execute(sa.select(Task).where(Task.project_id == uuid.UUID(pid)))).scalar_one()
    base = {c: getattr(task, c) for c in ("org_id", "schema_version", "key_id", "data_enc", "pii_counts")}
    rows = [dict(base, id=uuid.uuid4(), project_id=task.project_id, content_hash=os.urandom(32)) for _ in range(3)]
    rows.append(dict(base, id=uuid.uuid4(), project_id=uuid.uuid4(), content_hash=os.urandom(32)))
    async with ingest.ctx.session_factory() as session:
        with pytest.raises(IntegrityError):
            async with session.begin():
                await session.execute(sa.insert(Task), rows)
    async with ingest.ctx.session_factory() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(Task)
                                       .where(Task.project_id == task.project_id))).scalar_one()
    assert count == 1


async def test_deleting_a_project_deletes_its_tasks_and_their_pseudonyms(ingest: IngestEnv) -> None:
    doomed, kept = await _import(ingest, n=4), await _import(ingest, n=3)
    async with ingest.ctx.session_factory() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(TaskPseudonym)
                                      .where(TaskPseudonym.project_id == uuid.UUID(doomed)))).scalar_one() == 4
    async with ingest.ctx.session_factory() as session, session.begin():
        await session.execute(sa.delete(Project).where(Project.id == uuid.UUID(doomed)))
    async with ingest.ctx.session_factory() as session:
        def count(model: type, project: str) -> sa.Select:
            return sa.select(sa.func.count()).select_from(model).where(model.project_id == uuid.UUID(project))

        assert (await session.execute(count(Task, doomed))).scalar_one() == 0
        assert (await session.execute(count(TaskPseudonym, doomed))).scalar_one() == 0
        assert (await session.execute(count(Task, kept))).scalar_one() == 3


async def test_task_ciphertext_stays_in_its_row(ingest: IngestEnv) -> None:
    """Migration 0007: rows up to a page are not TOASTed (a redacted task with its report is ~2.4 kB, over the
    default 2 kB), and ciphertext is never put through compression; such a task imports and reads back."""
    async with ingest.ctx.session_factory() as session:
        options = (await session.execute(sa.text(
            "SELECT reloptions FROM pg_class WHERE oid = 'quorum_api.tasks'::regclass"))).scalar_one()
        storage = dict((await session.execute(sa.text(
            "SELECT attname, attstorage::text FROM pg_attribute WHERE attrelid = 'quorum_api.tasks'::regclass "
            "AND attname IN ('data_enc', 'original_enc')"))).all())
    assert "toast_tuple_target=8160" in options
    assert storage == {"data_enc": "e", "original_enc": "e"}  # external: out of line if ever, uncompressed

    pid = await ingest.create_project(pii={"enabled": True})
    text = " ".join(f"Call Maria Lopez on +1 415-555-{i:04d} or mail maria{i}@example.org." for i in range(40))
    result = await ingest.run_import(pid, (json.dumps({"text": text}) + "\n").encode())
    assert result["counts"]["created"] == 1, result
    async with ingest.ctx.session_factory() as session:
        stored = (await session.execute(sa.text("SELECT octet_length(data_enc) FROM quorum_api.tasks "
                                                "WHERE project_id = :p"), {"p": pid})).scalar_one()
    assert stored > 2100  # over the default TOAST threshold
    [task] = (await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params={"include_data": "true"},
                                      headers=await ingest.manager())).json()["items"]
    assert "maria0@example.org" not in task["data"]["text"] and "[EMAIL]" in task["data"]["text"]
