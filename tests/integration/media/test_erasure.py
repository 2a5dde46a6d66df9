"""Erasure by crypto-shredding: copies of the ciphertext taken before erasure cannot be decrypted after."""

from __future__ import annotations

import os
import uuid

import orjson
import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from services.api.imports.models import ImportOperation, ImportRowError
from services.api.imports.pipeline import decrypt_task_payload, encrypt_task_payload
from services.api.keys.models import DataKey
from services.api.keys.service import data_key_store
from services.api.media.models import Media
from services.api.tasks.models import Task, TaskPseudonym
from services.api.tasks.service import task_scope
from shared.crypto import KeyDestroyed, decrypt_stream
from shared.storage import iter_bytes, read_all

SUBJECT = "[PERSON_a1b2c3d4e5f6]"


async def make_task(env, text: str, *, import_id: uuid.UUID | None = None,  # noqa: ANN001
                    pseudonyms: tuple[str, ...] = ()) -> uuid.UUID:
    """A task as the import pipeline stores it: payload under its own data key (scope task:<id>)."""
    task_id = uuid.uuid4()
    key_id, dek = await data_key_store(env.ctx).create(task_scope(task_id))
    payload = orjson.dumps({"data": {"text": text}, "predictions": [], "redaction": {"counts": {}, "entities": []}})
    async with env.ctx.session_factory() as session, session.begin():
        session.add(Task(id=task_id, project_id=uuid.UUID(env.project_id), org_id=uuid.UUID(env.org_id),
                         schema_version=1, content_hash=os.urandom(32), key_id=key_id,
                         data_enc=encrypt_task_payload(dek, task_id, payload, purpose="data"),
                         import_id=import_id))
        await session.flush()
        for pseudonym in pseudonyms:
            session.add(TaskPseudonym(project_id=uuid.UUID(env.project_id), pseudonym=pseudonym, task_id=task_id))
    return task_id


async def _snapshot(env, task_id: uuid.UUID) -> tuple[str, bytes]:  # noqa: ANN001
    async with env.ctx.session_factory() as session:
        task = await session.get(Task, task_id)
        return task.key_id, bytes(task.data_enc)


async def _erase(env, body: dict, headers: dict | None = None):  # noqa: ANN001, ANN202
    return await env.client.post(f"/api/v1/projects/{env.project_id}/erasures", json=body,
                                 headers=headers or await env.manager())


async def test_erasing_a_task_shreds_its_keys_and_media(any_env) -> None:  # noqa: ANN001
    env = any_env
    task_id = await make_task(env, "Call Jane Roe at +1 555 0100", pseudonyms=(SUBJECT,))
    keep_id = await make_task(env, "An unrelated task")
    photo = await env.upload(b"%PDF-1.4\nscan of the consent form\n" * 50, "consent.pdf", "application/pdf",
                             params={"task_id": str(task_id)})
    assert photo.status_code == 201
    media_id = photo.json()["id"]
    elsewhere = await env.upload(b"%PDF-1.4\nanother\n", "x.pdf", "application/pdf",
                                 params={"task_id": str(uuid.uuid4())})
    assert elsewhere.status_code == 404  # media only attaches to a task of the same project
    admin = await env.headers(roles=("org_admin",))
    assert (await env.client.get(f"/api/v1/tasks/{task_id}", headers=admin)).status_code == 200

    # "backups": the task ciphertext and the stored media object, copied before the erasure
    key_id, task_ciphertext = await _snapshot(env, task_id)
    raw = env.ctx.extras["raw_blob_store"]
    blob_key = f"media/{env.project_id}/{media_id}"
    media_ciphertext = await read_all(raw.open_range(blob_key))
    dek_before = await data_key_store(env.ctx).get(key_id)
    assert decrypt_task_payload(dek_before, task_id, task_ciphertext, purpose="data")

    response = await _erase(env, {"task_id": str(task_id)})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["tasks_erased"] == 1 and report["media_erased"] == 1
    assert report["keys_destroyed"] >= 2 and report["blobs_deleted"] == 1

    # the keys are gone: neither copy can be decrypted any more
    with pytest.raises(KeyDestroyed):
        await data_key_store(env.ctx).get(key_id)
    async with env.ctx.session_factory() as session:
        key_row = await session.get(DataKey, key_id)
        assert key_row.wrapped is None and key_row.destroyed_at is not None
        task = await session.get(Task, task_id)
        assert task.erased_at is not None and task.data_enc == b""
        assert (await session.execute(sa.select(TaskPseudonym).where(TaskPseudonym.task_id == task_id))).first() is None
        assert await session.get(Media, uuid.UUID(media_id)) is None
    with pytest.raises(KeyDestroyed):
        await read_all(decrypt_stream(iter_bytes(media_ciphertext), data_key_store(env.ctx).get))
    with pytest.raises(InvalidTag):  # any other key is simply wrong
        decrypt_task_payload(os.urandom(32), task_id, task_ciphertext, purpose="data")
    # restoring the ciphertext object from a backup does not bring the data back
    await raw.put(blob_key, iter_bytes(media_ciphertext))
    with pytest.raises(KeyDestroyed):
        await read_all(env.ctx.extras["blob_store"].open_range(blob_key))
    await raw.delete(blob_key)

    assert (await env.client.get(f"/api/v1/tasks/{task_id}", headers=admin)).status_code == 410
    assert (await env.client.get(f"/api/v1/media/{media_id}", headers=admin)).status_code == 404
    assert (await env.client.get(f"/api/v1/tasks/{keep_id}", headers=admin)).status_code == 200

    deleted = await env.events("task.deleted", task_id=str(task_id))
    assert deleted == [{"task_id": str(task_id), "project_id": env.project_id}]
    audits = await env.events("audit.recorded", action="erasure.task", resource_id=str(task_id))
    assert len(audits) == 1 and audits[0]["details"]["keys_destroyed"] == report["keys_destroyed"]
    assert "Jane" not in orjson.dumps(audits).decode()

    again = await _erase(env, {"task_id": str(task_id)})  # idempotent: nothing left to shred
    assert again.status_code == 200 and again.json()["tasks_erased"] == 0


async def test_erasing_a_data_subject_by_pseudonym_or_value(env) -> None:  # noqa: ANN001
    first = await make_task(env, "Jane wrote in", pseudonyms=(SUBJECT,))
    second = await make_task(env, "Jane again", pseudonyms=(SUBJECT, "[EMAIL_0000aaaa1111]"))
    other = await make_task(env, "Someone else", pseudonyms=("[PERSON_ffffeeeedddd]",))
    response = await _erase(env, {"pseudonym": SUBJECT})
    assert response.status_code == 200, response.text
    assert response.json()["tasks_erased"] == 2
    async with env.ctx.session_factory() as session:
        erased = {t.id: t.erased_at for t in (await session.execute(
            sa.select(Task).where(Task.id.in_([first, second, other])))).scalars()}
    assert erased[first] and erased[second] and erased[other] is None
    audit = await env.events("audit.recorded", action="erasure.subject")
    assert audit and all(SUBJECT not in orjson.dumps(a).decode() for a in audit)  # only a hash is kept
    assert (await _erase(env, {"pseudonym": SUBJECT})).status_code == 404

    # by value: the project's key turns it into the pseudonym the import stored
    from services.api.erasure.service import subject_pseudonym
    from services.api.projects.models import Project

    async with env.ctx.session_factory() as session:
        project = await session.get(Project, uuid.UUID(env.project_id))
    token = subject_pseudonym(env.ctx, project.secret_sealed, env.project_id, "EMAIL", "jane.roe@example.com")
    third = await make_task(env, "mail from Jane", pseudonyms=(token,))
    response = await _erase(env, {"entity_type": "EMAIL", "value": "Jane.Roe@example.com"})
    assert response.status_code == 200, response.text
    assert response.json()["tasks_erased"] == 1
    async with env.ctx.session_factory() as session:
        assert (await session.get(Task, third)).erased_at is not None


async def test_erasing_a_dataset(env) -> None:  # noqa: ANN001
    op_id = uuid.uuid4()
    spool_key = f"imports/{env.project_id}/{op_id}"
    store = env.ctx.extras["blob_store"]
    await store.put(spool_key, iter_bytes(b'{"text": "raw upload with Jane Roe"}\n' * 100),
                    scope=f"import:{op_id}")
    async with env.ctx.session_factory() as session, session.begin():
        session.add(ImportOperation(id=op_id, project_id=uuid.UUID(env.project_id), org_id=uuid.UUID(env.org_id),
                                    status="succeeded", format="jsonl", filename="people.jsonl",
                                    spool_key=spool_key))
        await session.flush()
        session.add(ImportRowError(operation_id=op_id, row_number=3, seq=0, field="text",
                                   message="row 3 mentions Jane Roe"))
    tasks = [await make_task(env, f"row {i} about Jane", import_id=op_id) for i in range(3)]
    loose = await make_task(env, "not in the dataset")
    pdf = await env.upload(b"%PDF-1.4\ndataset scan\n" * 40, "scan.pdf", "application/pdf",
                           params={"dataset_id": str(op_id)})
    assert pdf.status_code == 201
    spool_copy = await read_all(env.ctx.extras["raw_blob_store"].open_range(spool_key))

    response = await _erase(env, {"dataset_id": str(op_id)})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["tasks_erased"] == 3 and report["media_erased"] == 1 and report["blobs_deleted"] == 2
    with pytest.raises(KeyDestroyed):
        await read_all(decrypt_stream(iter_bytes(spool_copy), data_key_store(env.ctx).get))
    async with env.ctx.session_factory() as session:
        for t in tasks:
            assert (await session.get(Task, t)).erased_at is not None
        assert (await session.get(Task, loose)).erased_at is None
        operation = await session.get(ImportOperation, op_id)
        assert operation.spool_key is None and operation.filename is None
        assert (await session.execute(sa.select(ImportRowError).where(
            ImportRowError.operation_id == op_id))).first() is None
    assert not await env.ctx.extras["raw_blob_store"].exists(spool_key)
    assert len(await env.events("task.deleted", project_id=env.project_id)) >= 3


async def test_erasure_needs_a_manager_and_one_target(env) -> None:  # noqa: ANN001
    task_id = await make_task(env, "protected")
    for claims, status in [(dict(proj={env.project_id: "annotator"}), 403), (dict(roles=("auditor",)), 403),
                           (dict(roles=("org_admin",), org=env.other_org_id), 404)]:
        response = await _erase(env, {"task_id": str(task_id)}, headers=await env.headers(**claims))
        assert response.status_code == status, (claims, response.text)
    assert (await _erase(env, {"task_id": str(task_id), "pseudonym": SUBJECT})).status_code == 422
    assert (await _erase(env, {})).status_code == 422
    assert (await _erase(env, {"task_id": str(uuid.uuid4())})).status_code == 404
    async with env.ctx.session_factory() as session:
        assert (await session.get(Task, task_id)).erased_at is None


async def test_deleting_one_media_shreds_it(env) -> None:  # noqa: ANN001
    created = await env.upload(b"%PDF-1.4\nsingle media to delete\n" * 30, "one.pdf", "application/pdf")
    media_id, url = created.json()["id"], created.json()["url"]
    async with env.ctx.session_factory() as session:
        key_id = (await session.get(Media, uuid.UUID(media_id))).data_key_id
    annotator = await env.headers(proj={env.project_id: "annotator"})
    assert (await env.client.delete(url, headers=annotator)).status_code == 403
    assert (await env.client.delete(url, headers=await env.manager())).status_code == 204
    with pytest.raises(KeyDestroyed):
        await data_key_store(env.ctx).get(key_id)
    assert (await env.client.get(url, headers=await env.manager())).status_code == 404
    assert await env.events("audit.recorded", action="media.delete", resource_id=media_id, outcome="success")


async def test_media_whose_key_was_shredded_answers_410(env) -> None:  # noqa: ANN001
    created = await env.upload(b"text whose key is shredded underneath\n", "gone.txt", "text/plain")
    async with env.ctx.session_factory() as session:
        key_id = (await session.get(Media, uuid.UUID(created.json()["id"]))).data_key_id
    await data_key_store(env.ctx).destroy(key_id)  # e.g. a scope shredded by another erasure path
    response = await env.client.get(created.json()["url"], headers=await env.manager())
    assert response.status_code == 410 and "erased" in response.json()["detail"]


async def test_erasure_by_a_pseudonym_with_nul_is_a_422(env) -> None:  # noqa: ANN001
    """It reached PostgreSQL, which stores no NUL, and answered 500 (found by tests/security/test_api_fuzz.py)."""
    response = await _erase(env, {"pseudonym": SUBJECT + "\x00"})
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == ["/body/pseudonym"] and "NUL" in response.text
