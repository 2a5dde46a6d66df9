"""Erasure by crypto-shredding: destroy the data keys first, then the rows and blobs they protected.

Once a data key is destroyed its ciphertext is noise wherever copies of it live (object storage
versions, replicas, backups of the bucket). Order inside one transaction per batch: destroy keys →
tombstone tasks (ciphertext columns emptied, `erased_at` set; the row stays so annotations and events
that name the task do not dangle) → drop pseudonym index rows and media rows → stage `task.deleted` per
task. After the commit the media ciphertext objects are deleted too (only to free space: the keys are
already gone). Each erasure leaves an `erasures` record and an `audit.recorded` event; neither holds
any of the erased content.

Database backups taken before the erasure still hold the wrapped data keys; they become unusable for
erased data once the KEK version that wrapped them is retired (see `quorum keys rotate` / `retire`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.erasure.models import Erasure
from services.api.events import publish_event
from services.api.imports.models import ImportOperation, ImportRowError
from services.api.imports.pipeline import decrypt_task_payload, encrypt_task_payload
from services.api.keys.models import DataKey
from services.api.keys.service import data_key_store, keyring, project_keys
from services.api.media import audit
from services.api.media.audit import Actor, RequestMeta
from services.api.media.models import Media
from services.api.media.service import ProjectRef, blob_store, media_scope
from services.api.projects.models import Project
from services.api.tasks.models import Task, TaskPseudonym
from shared.app import ServiceContext
from shared.errors import BadRequest, NotFound
from shared.events.catalog import TaskDeleted
from services.api.ids import uuid_or_404 as _uuid

TargetType = Literal["task", "dataset", "subject", "media"]
BATCH = 500


@dataclass
class ErasureReport:
    erasure_id: str
    target_type: str
    tasks_erased: int = 0
    media_erased: int = 0
    keys_destroyed: int = 0
    blobs_deleted: int = 0


def task_scope(task_id: uuid.UUID | str) -> str:
    return f"task:{task_id}"


def dataset_scopes(dataset_id: uuid.UUID | str) -> list[str]:
    return [f"dataset:{dataset_id}", f"import:{dataset_id}", f"import-tasks:{dataset_id}"]


async def _erase_task_batch(session: AsyncSession, ctx: ServiceContext, project: ProjectRef,
                            task_ids: Sequence[uuid.UUID], report: ErasureReport) -> list[str]:
    """Shred and tombstone one batch inside the caller's transaction; returns media blob keys to delete."""
    keys = data_key_store(ctx)
    tasks = (await session.execute(
        sa.select(Task.id, Task.key_id, Task.original_key_id, Task.created_at)
        .where(Task.project_id == uuid.UUID(project.id), Task.id.in_(task_ids), Task.erased_at.is_(None))
        .with_for_update())).all()
    found = [t.id for t in tasks]
    media = (await session.execute(
        sa.select(Media.id, Media.data_key_id, Media.blob_key)
        .where(Media.project_id == uuid.UUID(project.id), Media.task_id.in_(task_ids))
        .with_for_update())).all() if task_ids else []
    await _rekey_siblings(session, ctx, project, {t.key_id for t in tasks}, {t.created_at for t in tasks}, found)
    key_ids = [t.key_id for t in tasks] + [t.original_key_id for t in tasks if t.original_key_id] + \
              [m.data_key_id for m in media]
    report.keys_destroyed += await _destroy_keys(session, key_ids)
    report.keys_destroyed += await keys.destroy_scopes(
        [task_scope(t) for t in found] + [media_scope(m.id) for m in media], session=session)
    if found:
        await session.execute(
            sa.update(Task).where(Task.id.in_(found))
            .values(erased_at=sa.func.now(), data_enc=b"", original_enc=None, pii_counts={},
                    has_predictions=False))
        await session.execute(sa.delete(TaskPseudonym).where(TaskPseudonym.task_id.in_(found)))
    if media:
        await session.execute(sa.delete(Media).where(Media.id.in_([m.id for m in media])))
    for task_id in found:
        await publish_event(session, ctx, "task.deleted", TaskDeleted(task_id=str(task_id), project_id=project.id),
                            org_id=project.org_id, project_id=project.id)
    report.tasks_erased += len(found)
    report.media_erased += len(media)
    return [m.blob_key for m in media]


async def _rekey_siblings(session: AsyncSession, ctx: ServiceContext, project: ProjectRef, key_ids: set[str],
                          created: set[datetime], erased: Sequence[uuid.UUID]) -> int:
    """Tasks imported together share a data key (`import_tasks_per_data_key`). Before a shared key is destroyed,
    its live tasks that are not being erased move to a fresh key: decrypted with the old one, encrypted with
    the new one, in the erasure's transaction. Returns how many tasks were re-encrypted.

    Tasks share a key only within one import chunk, and a chunk's tasks share their project and `created_at`
    (the importer stamps a chunk once; re-keying keeps it): the siblings are found through the (project,
    created_at) index among a chunk's tasks, not by scanning every task for the key."""
    if not key_ids:
        return 0
    siblings = (await session.execute(siblings_query(project, key_ids, created, erased))).all()
    if not siblings:
        return 0
    keys = data_key_store(ctx)
    fresh_keys: dict[str, tuple[str, bytes]] = {}
    old_keys: dict[str, bytes] = {}
    updates = []
    for task_id, old_key_id, blob, scope in siblings:
        if old_key_id not in old_keys:
            old_keys[old_key_id] = await keys.get(old_key_id, session=session)
            fresh_keys[old_key_id] = await keys.create(scope, session=session)
        new_key_id, new_dek = fresh_keys[old_key_id]
        payload = decrypt_task_payload(old_keys[old_key_id], task_id, blob, purpose="data")
        updates.append({"id": task_id, "key_id": new_key_id,
                        "data_enc": encrypt_task_payload(new_dek, task_id, payload, purpose="data")})
    await session.execute(sa.update(Task), updates)  # ORM bulk UPDATE by primary key
    return len(updates)


def siblings_query(project: ProjectRef, key_ids: set[str], created: set[datetime], erased: Sequence[uuid.UUID]
                   ) -> sa.Select:
    """The live tasks under `key_ids` but the `erased` ones, locked, with their key's scope."""
    return (sa.select(Task.id, Task.key_id, Task.data_enc, DataKey.scope).join(DataKey, DataKey.id == Task.key_id)
            .where(Task.project_id == uuid.UUID(project.id), Task.created_at.in_(sorted(created)),
                   Task.key_id.in_(sorted(key_ids)), Task.erased_at.is_(None), Task.id.not_in(list(erased)))
            .order_by(Task.id).with_for_update(of=Task))


async def _destroy_keys(session: AsyncSession, key_ids: Sequence[str]) -> int:
    if not key_ids:
        return 0
    result = await session.execute(
        sa.update(DataKey).where(DataKey.id.in_(list(set(key_ids))), DataKey.destroyed_at.is_(None))
        .values(wrapped=None, kek_version=None, destroyed_at=sa.func.now()))
    return result.rowcount or 0


async def _finish(ctx: ServiceContext, project: ProjectRef, report: ErasureReport, target_type: str,
                  target_ref: str, actor: Actor, meta: RequestMeta | None, blob_keys: list[str]) -> ErasureReport:
    raw = blob_store(ctx).inner
    for key in blob_keys:
        await raw.delete(key)
        report.blobs_deleted += 1
    async with ctx.session_factory() as session, session.begin():
        session.add(Erasure(id=uuid.UUID(report.erasure_id), org_id=uuid.UUID(project.org_id),
                            project_id=uuid.UUID(project.id), target_type=target_type, target_ref=target_ref,
                            requested_by=actor.id, tasks_erased=report.tasks_erased,
                            media_erased=report.media_erased, keys_destroyed=report.keys_destroyed,
                            blobs_deleted=report.blobs_deleted))
        await audit.record(session, ctx, actor=actor, org_id=project.org_id, project_id=project.id,
                           resource_type=target_type, resource_id=target_ref, action=f"erasure.{target_type}",
                           outcome="success", meta=meta,
                           details={"erasure_id": report.erasure_id, "tasks_erased": report.tasks_erased,
                                    "media_erased": report.media_erased,
                                    "keys_destroyed": report.keys_destroyed,
                                    "blobs_deleted": report.blobs_deleted})
    return report


async def _erase_tasks_in_batches(ctx: ServiceContext, project: ProjectRef, task_ids: Sequence[uuid.UUID],
                                  report: ErasureReport) -> list[str]:
    blob_keys: list[str] = []
    for i in range(0, len(task_ids), BATCH):
        async with ctx.session_factory() as session, session.begin():
            blob_keys += await _erase_task_batch(session, ctx, project, task_ids[i:i + BATCH], report)
    return blob_keys


async def erase_task(ctx: ServiceContext, project: ProjectRef, task_id: uuid.UUID | str, *, actor: Actor,
                     meta: RequestMeta | None = None) -> ErasureReport:
    tid = _uuid(task_id, "task")
    async with ctx.session_factory() as session:
        exists = (await session.execute(sa.select(Task.erased_at).where(
            Task.id == tid, Task.project_id == uuid.UUID(project.id)))).first()
    if exists is None:
        raise NotFound(f"task {task_id} not found in this project")
    report = ErasureReport(str(uuid.uuid4()), "task")
    blob_keys = await _erase_tasks_in_batches(ctx, project, [tid], report)
    return await _finish(ctx, project, report, "task", str(tid), actor, meta, blob_keys)


async def erase_dataset(ctx: ServiceContext, project: ProjectRef, dataset_id: uuid.UUID | str, *, actor: Actor,
                        meta: RequestMeta | None = None) -> ErasureReport:
    """An import batch: its tasks, media uploaded into it, its spooled raw upload and its row errors."""
    did = _uuid(dataset_id, "dataset")
    pid = uuid.UUID(project.id)
    async with ctx.session_factory() as session:
        operation = (await session.execute(sa.select(ImportOperation.id, ImportOperation.spool_key).where(
            ImportOperation.id == did, ImportOperation.project_id == pid))).first()
        has_media = (await session.execute(sa.select(sa.func.count()).select_from(Media).where(
            Media.project_id == pid, Media.dataset_id == did))).scalar_one()
        task_ids = list((await session.execute(sa.select(Task.id).where(
            Task.project_id == pid, Task.import_id == did, Task.erased_at.is_(None)))).scalars())
    if operation is None and not has_media and not task_ids:
        raise NotFound(f"dataset {dataset_id} not found in this project")
    report = ErasureReport(str(uuid.uuid4()), "dataset")
    blob_keys = await _erase_tasks_in_batches(ctx, project, task_ids, report)
    keys = data_key_store(ctx)
    async with ctx.session_factory() as session, session.begin():
        media = (await session.execute(sa.select(Media.id, Media.data_key_id, Media.blob_key).where(
            Media.project_id == pid, Media.dataset_id == did).with_for_update())).all()
        report.keys_destroyed += await _destroy_keys(session, [m.data_key_id for m in media])
        report.keys_destroyed += await keys.destroy_scopes(
            [media_scope(m.id) for m in media] + dataset_scopes(did), session=session)
        if media:
            await session.execute(sa.delete(Media).where(Media.id.in_([m.id for m in media])))
        report.media_erased += len(media)
        blob_keys += [m.blob_key for m in media]
        if operation is not None:
            if operation.spool_key:
                report.keys_destroyed += await _shred_blob_key(ctx, session, operation.spool_key)
                blob_keys.append(operation.spool_key)
            await session.execute(sa.delete(ImportRowError).where(ImportRowError.operation_id == did))
            await session.execute(sa.update(ImportOperation).where(ImportOperation.id == did)
                                  .values(spool_key=None, filename=None))
    return await _finish(ctx, project, report, "dataset", str(did), actor, meta, blob_keys)


async def _shred_blob_key(ctx: ServiceContext, session: AsyncSession, key: str) -> int:
    """Destroy the data key named in a stored object's envelope header (the object may already be gone)."""
    try:
        key_id = await blob_store(ctx).data_key_id(key)
    except Exception:  # missing object or not an envelope: nothing to shred
        return 0
    return await _destroy_keys(session, [key_id])


def subject_pseudonym(ctx: ServiceContext, sealed_secret: str | None, project_id: str, entity_type: str,
                      value: str) -> str:
    """The pseudonym import would have given `value` (same key, same policy defaults); never stored."""
    from shared.pii import EntityType, RedactionPolicy, pseudonym

    if not sealed_secret:
        raise BadRequest("this project has no pseudonymisation key; erase by pseudonym instead")
    try:
        entity = EntityType(entity_type)
    except ValueError:
        raise BadRequest(f"unknown entity_type {entity_type!r}; one of {', '.join(e.value for e in EntityType)}"
                         ) from None
    key = project_keys(keyring(ctx), project_id, sealed_secret).pseudonym_key
    return pseudonym(entity, value, key, hex_chars=RedactionPolicy().pseudonym_hex_chars)


async def erase_subject(ctx: ServiceContext, project: ProjectRef, *, pseudonym: str | None = None,
                        entity_type: str | None = None, value: str | None = None, actor: Actor,
                        meta: RequestMeta | None = None) -> ErasureReport:
    """Every task that mentions the data subject (by pseudonym, or by the value the project's key maps
    to one). The erasure record keeps only a hash of the pseudonym."""
    pid = uuid.UUID(project.id)
    if pseudonym is None:
        if not (entity_type and value):
            raise BadRequest("give either pseudonym, or entity_type and value")
        async with ctx.session_factory() as session:
            sealed = (await session.execute(sa.select(Project.secret_sealed).where(Project.id == pid))).scalar_one()
        pseudonym = subject_pseudonym(ctx, sealed, project.id, entity_type, value)
    async with ctx.session_factory() as session:
        task_ids = list((await session.execute(sa.select(TaskPseudonym.task_id).where(
            TaskPseudonym.project_id == pid, TaskPseudonym.pseudonym == pseudonym))).scalars())
    if not task_ids:
        raise NotFound("no records of this data subject in this project")
    report = ErasureReport(str(uuid.uuid4()), "subject")
    blob_keys = await _erase_tasks_in_batches(ctx, project, task_ids, report)
    ref = "sha256:" + hashlib.sha256(f"{project.id}|{pseudonym}".encode()).hexdigest()[:32]
    return await _finish(ctx, project, report, "subject", ref, actor, meta, blob_keys)


