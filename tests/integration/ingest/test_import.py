"""Bulk import end to end: redaction, encryption at rest, events, idempotency, predictions, originals."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from services.api.db import outbox
from services.api.imports.models import ImportOperation
from services.api.imports.service import resume_abandoned
from services.api.keys.service import data_key_store
from services.api.tasks.models import Task, TaskPseudonym
from tests.conftest import wait_until
from tests.integration.ingest.conftest import IngestEnv

# One value per entity type the redactor knows; every one must vanish from what annotators get.
PII = {
    "EMAIL": "maria.lopez@example.org",
    "PHONE": "+1 415-555-0132",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "US_SSN": "536-22-8141",
    "UK_NINO": "JG 10 37 52 A",
    "ES_NIF": "12345678Z",
    "IP_ADDRESS": "192.168.10.24",
    "MAC_ADDRESS": "00:1A:2B:3C:4D:5E",
    "URL_CREDENTIALS": "admin:s3cret",
    "DATE_OF_BIRTH": "14/03/1985",
    "STREET_ADDRESS": "221 Baker Street",
    "PERSON": "Maria Lopez",
}
PII_TEXT = ("Customer Maria Lopez (born 14/03/1985) wrote from maria.lopez@example.org, phone +1 415-555-0132. "
            "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-8141, NINO JG 10 37 52 A, "
            "NIF 12345678Z. Server 192.168.10.24 with MAC 00:1A:2B:3C:4D:5E used "
            "https://admin:s3cret@db.example.com/x. She lives at 221 Baker Street.")


def jsonl(rows: list[Any]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


async def _tasks(ingest: IngestEnv, project_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = await ingest.client.get(f"/api/v1/projects/{project_id}/tasks",
                                params={"include_data": "true", "limit": 500},
                                headers=headers or await ingest.annotator(project_id))
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_pii_never_reaches_an_annotator_and_only_ciphertext_is_stored(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    rows = [{"text": f"Ticket {i}. {PII_TEXT}"} for i in range(30)]
    op = await ingest.run_import(pid, jsonl(rows))
    assert op["status"] == "succeeded" and op["counts"]["created"] == 30 and op["progress"] == 1.0

    await ingest.run_import(pid, jsonl([{"text": "nothing personal here"}]))
    annotator = await ingest.annotator(pid)
    r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params={"has_pii": "false"}, headers=annotator)
    assert len(r.json()["items"]) == 1 and "data" not in r.json()["items"][0]  # metadata only, unless asked
    r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks",
                                params={"has_pii": "true", "include_data": "true", "limit": 500}, headers=annotator)
    tasks = r.json()["items"]
    assert len(tasks) == 30
    for task in tasks:
        r = await ingest.client.get(f"/api/v1/tasks/{task['id']}", headers=annotator)
        assert r.status_code == 200
        served = r.text
        for entity, value in PII.items():
            assert value not in served, f"{entity} leaked to an annotator"
            assert value not in json.dumps(task)
        body = r.json()
        assert set(body["redaction"]["counts"]) == set(PII)  # every entity type found and reported
        for ent in body["redaction"]["entities"]:  # offsets point at placeholders in the redacted text
            assert body["data"]["text"][ent["start"]:ent["end"]] == f"[{ent['entity_type']}]"

    async with ingest.ctx.session_factory() as session:
        stored = (await session.execute(sa.select(Task.data_enc, Task.original_enc, Task.pii_counts)
                                        .where(Task.project_id == uuid.UUID(pid)))).all()
        assert len(stored) == 31
        raw = b"".join(r.data_enc for r in stored)
        for needle in ["Ticket", "Customer", *PII.values()]:
            assert needle.encode() not in raw  # ciphertext only
        assert all(r.original_enc is None for r in stored)  # keep_original defaults to false
        # the whole row as PostgreSQL renders it: no plaintext in any column
        dump = "\n".join(str(row) for row in (await session.execute(
            sa.text("SELECT t::text FROM quorum_api.tasks t WHERE project_id = :p"), {"p": pid})).scalars())
        for needle in ["Customer", "Baker", "maria"]:
            assert needle not in dump
        events = (await session.execute(sa.select(outbox.c.envelope).where(outbox.c.type == "tasks.imported")))
        created = [json.loads(e)["payload"] for e in events.scalars()]
        announced = [t for p in created if p["project_id"] == pid for t in p["task_ids"]]
        assert len(announced) == len(set(announced)) == 31
        assert {t["id"] for t in tasks} <= set(announced)
        reads = (await session.execute(sa.select(outbox.c.envelope).where(outbox.c.type == "audit.recorded")))
        actions = [json.loads(e)["payload"] for e in reads.scalars()]
        read_ids = {a["resource_id"] for a in actions if a["action"] == "task.read"}
        assert {t["id"] for t in tasks} <= read_ids  # every read of task data audited


async def test_the_raw_upload_is_ciphertext_and_is_deleted_after_processing(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    op = await ingest.run_import(pid, jsonl([{"text": PII_TEXT}]))
    raw_store = ingest.ctx.extras["raw_blob_store"]
    remaining = [key async for key in raw_store.list(f"imports/{pid}/")]
    assert remaining == []  # the unredacted upload does not outlive its import
    async with ingest.ctx.session_factory() as session:
        scopes = (await session.execute(sa.text(
            "SELECT destroyed_at IS NOT NULL FROM quorum_api.data_keys WHERE scope = :s"),
            {"s": f"import:{op['id']}"})).scalars().all()
    assert scopes and all(scopes)  # and its data key is shredded


async def test_same_content_again_creates_no_new_tasks(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    body = jsonl([{"text": f"row {i}"} for i in range(40)])
    first = await ingest.run_import(pid, body)
    assert first["counts"]["created"] == 40
    again = await ingest.run_import(pid, body)
    assert again["counts"] == {"valid": 40, "created": 0, "duplicates": 40, "invalid": 0}
    # the same rows in another format are the same tasks too
    as_csv = ("text\n" + "\n".join(f"row {i}" for i in range(45))).encode()
    third = await ingest.run_import(pid, as_csv, "text/csv")
    assert third["counts"]["created"] == 5 and third["counts"]["duplicates"] == 40
    # duplicates inside one file count once
    fourth = await ingest.run_import(pid, jsonl([{"text": "twin"}, {"text": "twin"}]))
    assert fourth["counts"]["created"] == 1 and fourth["counts"]["duplicates"] == 1
    async with ingest.ctx.session_factory() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(Task)
                                       .where(Task.project_id == uuid.UUID(pid)))).scalar_one()
    assert count == 46


async def test_idempotency_key_replays_the_operation_without_reading_the_body(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    r1 = await ingest.start_import(pid, jsonl([{"text": "one"}, {"text": "two"}]), headers=key)
    assert r1.status_code == 202
    r2 = await ingest.start_import(pid, b"this body is never looked at", headers=key)
    assert r2.status_code == 202 and r2.json()["id"] == r1.json()["id"]
    assert r2.headers["Idempotent-Replayed"] == "true"
    op = await ingest.wait_import(r1.json()["id"])
    assert op["counts"]["created"] == 2 and op["idempotency_key"] == key["Idempotency-Key"]
    r3 = await ingest.start_import(pid, jsonl([{"text": "one"}]), headers={"Idempotency-Key": " "})
    assert r3.status_code == 400


async def test_label_studio_tasks_with_predictions_keep_spans_on_the_redacted_text(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    text = "Call Maria Lopez at +1 415-555-0132 about the Acme order."
    acme = text.index("Acme")
    maria = text.index("Maria")
    rows = [{"data": {"text": text}, "predictions": [{"model_version": "ner-1", "score": 0.8, "result": [
        {"from_name": "entities", "to_name": "text", "type": "labels",
         "value": {"start": acme, "end": acme + 4, "text": "Acme", "labels": ["ORG"]}},
        {"from_name": "entities", "to_name": "text", "type": "labels",
         "value": {"start": maria, "end": maria + 11, "text": "Maria Lopez", "labels": ["PER"]}},
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neutral"]}},
        {"from_name": "summary", "to_name": "text", "type": "textarea",
         "value": {"text": ["Maria Lopez wants a call back"]}},
    ]}]}]
    op = await ingest.run_import(pid, json.dumps(rows).encode(), "application/json")
    assert op["counts"]["created"] == 1, op
    [task] = await _tasks(ingest, pid)
    shown = task["data"]["text"]
    assert "Maria" not in json.dumps(task) and "555-0132" not in json.dumps(task)
    regions = task["predictions"][0]["result"]
    org, per = regions[0]["value"], regions[1]["value"]
    assert shown[org["start"]:org["end"]] == "Acme"  # shifted past the placeholders
    assert shown[per["start"]:per["end"]] == "[PERSON]"  # a span over PII now covers its placeholder
    assert "text" not in per
    assert regions[3]["value"]["text"] == ["[PERSON] wants a call back"]
    assert task["predictions"][0]["model_version"] == "ner-1"


async def test_predictions_that_do_not_fit_the_schema_are_row_errors(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()

    def task(result: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data": {"text": "some text here"}, "predictions": [{"result": result}]}

    rows = [
        task([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["angry"]}}]),
        task([{"from_name": "nope", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]),
        task([{"from_name": "entities", "to_name": "text", "type": "labels",
               "value": {"start": 5, "end": 500, "labels": ["PER"]}}]),
        task([{"from_name": "sentiment", "to_name": "text", "type": "choices",
               "value": {"choices": ["pos", "neg"]}}]),
        {"data": {"text": "fine"}, "annotations": []},
        task([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]),
    ]
    op = await ingest.run_import(pid, jsonl(rows))
    assert op["counts"]["created"] == 1 and op["counts"]["invalid"] == 5
    errors = {e["row"]: e for e in op["errors"]}
    assert "not an option" in errors[1]["message"] and errors[1]["field"].endswith("value.choices")
    assert "no control" in errors[2]["message"]
    assert "within the text" in errors[3]["message"]
    assert "exactly one" in errors[4]["message"]
    assert errors[5]["field"] == "annotations"


async def test_kept_originals_are_for_org_admins_only(ingest: IngestEnv) -> None:
    pid = await ingest.create_project(pii={"keep_original": True, "default": "pseudonymise"})
    await ingest.run_import(pid, jsonl([{"text": "Maria Lopez wrote from maria.lopez@example.org"},
                                        {"text": "Again Maria Lopez, from maria.lopez@example.org"}]))
    tasks = await _tasks(ingest, pid)
    task_id = tasks[0]["id"]
    # pseudonymised consistently within the project
    placeholders = [{e["entity_type"]: tasks[i]["data"]["text"][e["start"]:e["end"]]
                     for e in tasks[i]["redaction"]["entities"]} for i in range(2)]
    assert placeholders[0]["EMAIL"] == placeholders[1]["EMAIL"] and placeholders[0]["EMAIL"].startswith("[EMAIL_")
    r = await ingest.client.get(f"/api/v1/tasks/{task_id}/original", headers=await ingest.annotator(pid))
    assert r.status_code == 403
    r = await ingest.client.get(f"/api/v1/tasks/{task_id}/original", headers=await ingest.manager())
    assert r.status_code == 403
    r = await ingest.client.get(f"/api/v1/tasks/{task_id}/original", headers=await ingest.admin())
    assert r.status_code == 200 and "maria.lopez@example.org" in r.text
    # the data subject's tasks are found by pseudonym (for erasure)
    async with ingest.ctx.session_factory() as session:
        found = (await session.execute(sa.select(TaskPseudonym.task_id).where(
            TaskPseudonym.project_id == uuid.UUID(pid), TaskPseudonym.pseudonym == placeholders[0]["EMAIL"])
        )).scalars().all()
    assert len(found) == 2
    r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params={"pseudonym": placeholders[0]["EMAIL"]},
                                headers=await ingest.manager())
    assert len(r.json()["items"]) == 2


async def test_erasing_an_imported_task_rekeys_the_tasks_that_shared_its_data_key(ingest: IngestEnv) -> None:
    from services.api.imports.pipeline import decrypt_task_payload
    from shared.crypto import KeyDestroyed

    pid = await ingest.create_project(pii={"keep_original": True})
    await ingest.run_import(pid, jsonl([{"text": "Maria Lopez one"}, {"text": "Maria Lopez two"}, {"text": "three"}]))
    before = {t["id"]: t["data"] for t in await _tasks(ingest, pid)}
    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(Task.id, Task.key_id, Task.data_enc, Task.original_key_id)
                                      .where(Task.project_id == uuid.UUID(pid)).order_by(Task.row_number))).all()
    assert len(rows) == 3 and len({r.key_id for r in rows}) == 1  # imported together: one data key
    erased, siblings = rows[0], rows[1:]
    old_dek = await data_key_store(ingest.ctx).get(erased.key_id)
    assert decrypt_task_payload(old_dek, erased.id, erased.data_enc, purpose="data")  # the "backup" copy

    r = await ingest.client.post(f"/api/v1/projects/{pid}/erasures", json={"task_id": str(erased.id)},
                                 headers=await ingest.admin())
    assert r.status_code == 200, r.text
    assert r.json()["tasks_erased"] == 1 and r.json()["keys_destroyed"] == 2  # the shared key, the original's

    # the erased task: gone, and its copied ciphertext has no key left anywhere
    assert (await ingest.client.get(f"/api/v1/tasks/{erased.id}", headers=await ingest.annotator(pid))).status_code == 410
    assert (await ingest.client.get(f"/api/v1/tasks/{erased.id}/original",
                                    headers=await ingest.admin())).status_code == 410
    try:
        await data_key_store(ingest.ctx).get(erased.key_id)
        raise AssertionError("the shared key outlived the erasure")
    except KeyDestroyed:
        pass
    # the tasks that shared it: re-encrypted under a fresh key, content unchanged
    async with ingest.ctx.session_factory() as session:
        now = {r.id: r for r in (await session.execute(sa.select(Task.id, Task.key_id, Task.data_enc)
                                                       .where(Task.id.in_([s.id for s in siblings])))).all()}
    for old in siblings:
        assert now[old.id].key_id != erased.key_id and now[old.id].data_enc != old.data_enc
        r = await ingest.client.get(f"/api/v1/tasks/{old.id}", headers=await ingest.annotator(pid))
        assert r.status_code == 200 and r.json()["data"] == before[str(old.id)]
    assert len({now[s.id].key_id for s in siblings}) == 1


async def test_one_data_key_per_task_when_configured(ingest: IngestEnv) -> None:
    ingest.ctx.settings.import_tasks_per_data_key = 1
    try:
        pid = await ingest.create_project()
        await ingest.run_import(pid, jsonl([{"text": "one"}, {"text": "two"}]))
    finally:
        ingest.ctx.settings.import_tasks_per_data_key = 64
    async with ingest.ctx.session_factory() as session:
        keys = (await session.execute(sa.select(Task.key_id).where(Task.project_id == uuid.UUID(pid)))).scalars().all()
    assert len(keys) == len(set(keys)) == 2


async def test_task_reads_are_scoped(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    await ingest.run_import(pid, jsonl([{"text": "hello"}]))
    [task] = await _tasks(ingest, pid)
    other_annotator = await ingest.headers(proj={str(uuid.uuid4()): "annotator"})
    assert (await ingest.client.get(f"/api/v1/tasks/{task['id']}", headers=other_annotator)).status_code == 404
    stranger = await ingest.manager(org=ingest.other_org_id)
    assert (await ingest.client.get(f"/api/v1/tasks/{task['id']}", headers=stranger)).status_code == 404
    auditor = await ingest.headers(roles=("auditor",))
    assert (await ingest.client.get(f"/api/v1/tasks/{task['id']}", headers=auditor)).status_code == 404
    r = await ingest.client.get(f"/api/v1/imports/{task['import_id']}", headers=stranger)
    assert r.status_code == 404


async def test_an_abandoned_import_is_resumed_after_its_checkpoint(ingest: IngestEnv) -> None:
    """A replica died after committing rows 1..3: another one picks the operation up and does the rest once."""
    await check_an_abandoned_import_resumes(ingest)


async def check_an_abandoned_import_resumes(ingest: IngestEnv) -> None:
    """(Also run with S3 storage: test_import_s3.py.)"""
    pid = await ingest.create_project()
    body = jsonl([{"text": f"resumable {i}"} for i in range(8)])
    op_id = uuid.uuid4()
    key = f"imports/{pid}/{op_id}"
    store = ingest.ctx.extras["blob_store"]

    async def chunks():  # noqa: ANN202
        yield body

    await store.put(key, chunks(), scope=f"import:{op_id}")
    async with ingest.ctx.session_factory() as session, session.begin():
        project_org = (await session.execute(sa.text("SELECT org_id FROM quorum_api.projects WHERE id = :p"),
                                             {"p": pid})).scalar_one()
        session.add(ImportOperation(id=op_id, project_id=uuid.UUID(pid), org_id=project_org, status="running",
                                    format="jsonl", encoding="utf-8", spool_key=key, bytes_received=len(body),
                                    rows_committed=3, lease_owner="dead-replica",
                                    lease_until=sa.func.now() - sa.text("interval '1 minute'")))
    started = await resume_abandoned(ingest.ctx)
    assert op_id in started
    op = await ingest.wait_import(str(op_id))
    assert op["status"] == "succeeded" and op["counts"]["created"] == 5  # rows 4..8 only
    texts = sorted(t["data"]["text"] for t in await _tasks(ingest, pid))
    assert texts == [f"resumable {i}" for i in range(3, 8)]


async def test_concurrent_imports_of_the_same_file_create_each_task_once(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    body = jsonl([{"text": f"race {i}"} for i in range(120)])
    responses = await asyncio.gather(*(ingest.start_import(pid, body) for _ in range(3)))
    ops = [await ingest.wait_import(r.json()["id"]) for r in responses]
    assert sum(op["counts"]["created"] for op in ops) == 120
    assert sum(op["counts"]["duplicates"] for op in ops) == 240

    async def events() -> int:
        async with ingest.ctx.session_factory() as session:
            rows = (await session.execute(sa.select(outbox.c.envelope).where(outbox.c.type == "tasks.imported")))
            return sum(len(p["task_ids"]) for e in rows.scalars()
                       if (p := json.loads(e)["payload"])["project_id"] == pid)

    assert await wait_until(lambda: events()) == 120  # every task announced once, never a duplicate


async def test_tasks_sharing_a_data_key_are_found_through_an_index(ingest: IngestEnv) -> None:
    """Erasing one task looks up the tasks that share its key. They share their chunk's created_at, so the lookup
    goes through the (project, created_at) index to the chunk's tasks: with sequential scans switched off, the
    plan has none, and its index condition names created_at (a lookup by key alone scanned every task)."""
    from services.api.erasure.service import siblings_query
    from services.api.media.service import ProjectRef

    pid = await ingest.create_project()
    await ingest.run_import(pid, jsonl([{"text": f"task {i}"} for i in range(300)]))  # several 4 KiB blocks
    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(Task.id, Task.key_id, Task.created_at)
                                      .where(Task.project_id == uuid.UUID(pid)))).all()
        by_key: dict[str, set] = {}
        for row in rows:
            by_key.setdefault(row.key_id, set()).add(row.created_at)
        assert len(by_key) > 1 and all(len(stamps) == 1 for stamps in by_key.values())

        project = ProjectRef(id=pid, org_id=str(ingest.org_id))
        target = rows[0]
        query = siblings_query(project, {target.key_id}, {target.created_at}, [target.id])
        siblings = (await session.execute(query)).all()
        assert {s.id for s in siblings} == {r.id for r in rows if r.key_id == target.key_id} - {target.id}
        await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        compiled = query.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join((await session.execute(sa.text(f"EXPLAIN {compiled}"))).scalars())
    tasks_lines = [line for line in plan.splitlines() if " on tasks" in line]
    assert tasks_lines and not any("Seq Scan" in line for line in tasks_lines), plan
    # and the index narrows it to the chunk, not to the whole project
    assert any("Index Cond" in line and "created_at" in line for line in plan.splitlines()), plan


async def test_duplicate_lookup_probes_the_content_hash_index_even_without_statistics(ingest: IngestEnv) -> None:
    """A chunk's duplicates are looked up with one probe of the unique (project, content hash) index per hash,
    on a table PostgreSQL has no statistics for yet, as at a deployment's first big import (here a fresh copy
    of the tasks table with 5,000 small rows): asked as `content_hash = ANY(...)`, the planner scanned the
    project's (project, created_at) index and filtered every task of the project, for every chunk."""
    from services.api.imports.service import existing_hashes_sql

    project, org = uuid.uuid4(), uuid.uuid4()
    hashes = [os.urandom(32) for _ in range(5000)]
    now = datetime.now(UTC)
    async with ingest.ctx.engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        async with pg.transaction():
            await pg.execute("CREATE TEMP TABLE fresh_tasks (LIKE quorum_api.tasks INCLUDING ALL) ON COMMIT DROP")
            await pg.copy_records_to_table(
                "fresh_tasks", columns=["id", "project_id", "org_id", "schema_version", "content_hash", "key_id",
                                        "data_enc", "pii_counts", "has_predictions", "row_number", "created_at"],
                records=[(uuid.uuid4(), project, org, 1, h, "dk", b"x" * 40, "{}", False, i, now)
                         for i, h in enumerate(hashes)])
            sql = existing_hashes_sql("fresh_tasks")
            probe = hashes[:700] + [os.urandom(32) for _ in range(300)]
            assert {r[0] for r in await pg.fetch(sql, project, probe)} == set(hashes[:700])
            assert await pg.fetch(sql, uuid.uuid4(), probe) == []  # another project has none of them
            plan = "\n".join(r[0] for r in await pg.fetch("EXPLAIN " + sql, project, probe))
    assert any("Index Cond" in line and "content_hash" in line for line in plan.splitlines()), plan
    assert "Filter" not in plan, plan


async def test_status_waits_for_the_end_of_the_import(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    r = await ingest.start_import(pid, jsonl([{"text": f"row {i}"} for i in range(400)]))
    assert r.status_code == 202, r.text
    op_id = r.json()["id"]
    headers = await ingest.manager()
    r = await ingest.client.get(f"/api/v1/imports/{op_id}", params={"wait": 30}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["counts"]["created"] == 400  # answered at the end, not before
    # an ended import answers at once; the wait is bounded and must be a number of seconds
    r = await ingest.client.get(f"/api/v1/imports/{op_id}", params={"wait": 30}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    for bad in ("31", "-1", "soon"):
        r = await ingest.client.get(f"/api/v1/imports/{op_id}", params={"wait": bad}, headers=headers)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert "wait" in r.text


async def test_task_listing_pages_follow_their_cursor(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    await ingest.run_import(pid, jsonl([{"text": f"page row {i}"} for i in range(5)]))
    headers = await ingest.manager()
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params=params, headers=headers)
        assert r.status_code == 200, r.text
        seen += [item["id"] for item in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    for bad in ("not-a-cursor", "2026-01-01T00:00:00+00:00|not-a-uuid", "yesterday|" + str(uuid.uuid4())):
        r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params={"cursor": bad}, headers=headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert "cursor" in r.json()["detail"]


async def test_filters_the_database_cannot_hold_are_a_422_naming_them(ingest: IngestEnv) -> None:
    """A NUL (U+0000) PostgreSQL cannot store, integers beyond the column's type: they reached the database and
    answered 500 (found by tests/security/test_api_fuzz.py)."""
    pid = await ingest.create_project()
    op = await ingest.run_import(pid, b'{"text": "one"}\n{"txt": "a row error"}\n')
    headers = await ingest.manager()
    for path, params, pointer in [
        (f"/api/v1/projects/{pid}/tasks", {"pseudonym": "[PERSON_\x00]"}, "/query/pseudonym"),
        (f"/api/v1/projects/{pid}/tasks", {"schema_version": 2**31}, "/query/schema_version"),
        (f"/api/v1/imports/{op['id']}", {"errors_after_row": 2**63}, "/query/errors_after_row"),
    ]:
        r = await ingest.client.get(path, params=params, headers=headers)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert [e["pointer"] for e in r.json()["errors"]] == [pointer], r.text
    r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", params={"schema_version": 2**31 - 1},
                                headers=headers)
    assert r.status_code == 200 and r.json()["items"] == []
