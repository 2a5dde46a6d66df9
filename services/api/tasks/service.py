"""Reading tasks: decrypt under the task's data key, return redacted data only, audit every read.

Key scopes (for erasure): a task's data key and its kept-original key both have scope `task_scope(id)`;
`SqlDataKeyStore.destroy_scopes([task_scope(id) ...])` makes the task unreadable everywhere.
Data subjects: `task_pseudonyms` maps (project, pseudonym) → tasks mentioning that person.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.events import publish_event
from services.api.imports.pipeline import decrypt_task_payload
from services.api.keys.service import SqlDataKeyStore
from services.api.projects.models import Project
from services.api.projects import policy
from services.api.projects.service import get_project
from services.api.tasks.models import Task, TaskPseudonym
from shared.auth.principal import Principal
from shared.crypto import DataKeyNotFound, KeyDestroyed
from shared.errors import Forbidden, NotFound, ProblemError
from shared.events.catalog import AuditRecorded


class TaskGone(ProblemError):
    status, type, title = 410, "task-erased", "Task erased"


class TaskUnreadable(ProblemError):
    status, type, title = 500, "task-ciphertext-invalid", "Task ciphertext failed authentication"


def task_scope(task_id: Any) -> str:
    return f"task:{task_id}"


@dataclass(frozen=True)
class AccessMeta:
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None


async def audit_read(session: AsyncSession, ctx: Any, principal: Principal, *, action: str, resource_type: str,
                     resource_id: Any, org_id: Any, project_id: Any, meta: AccessMeta,
                     outcome: str = "success", details: dict[str, Any] | None = None) -> None:
    payload = AuditRecorded(
        actor_id=principal.subject, actor_type="worker_token" if principal.kind == "worker" else "user",
        token_id=principal.token_id, org_id=str(org_id), resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None, action=action, outcome=outcome,
        request_id=meta.request_id, ip=meta.ip, user_agent=meta.user_agent, details=details or {})
    await publish_event(session, ctx, "audit.recorded", payload, org_id=str(org_id), project_id=str(project_id))


def _task_id(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("no such task") from None


async def _load_task(session: AsyncSession, principal: Principal, task_id: Any) -> tuple[Task, Project]:
    task = (await session.execute(sa.select(Task).where(Task.id == _task_id(task_id)))).scalar_one_or_none()
    if task is None:
        raise NotFound("no such task")
    try:
        project = await get_project(session, principal, task.project_id)
    except NotFound:
        raise NotFound("no such task") from None
    return task, project


def task_view(task: Task, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(task.id), "project_id": str(task.project_id), "schema_version": task.schema_version,
            "data": payload["data"], "predictions": payload.get("predictions", []),
            "redaction": payload.get("redaction", {"counts": {}, "entities": []}),
            "import_id": str(task.import_id) if task.import_id else None, "row_number": task.row_number,
            "created_at": task.created_at.isoformat()}


async def _decrypt(keys: SqlDataKeyStore, session: AsyncSession, task: Task, *, original: bool = False
                   ) -> dict[str, Any]:
    key_id = task.original_key_id if original else task.key_id
    blob = task.original_enc if original else task.data_enc
    if task.erased_at is not None or key_id is None or blob is None:
        raise TaskGone("this task was erased; its data can no longer be decrypted") if key_id else \
            NotFound("this task has no kept original")
    try:
        dek = await keys.get(key_id, session=session)
        return orjson.loads(decrypt_task_payload(dek, task.id, blob, purpose="original" if original else "data"))
    except (KeyDestroyed, DataKeyNotFound):
        raise TaskGone("this task's data key was destroyed; its data can no longer be decrypted") from None
    except (InvalidTag, ValueError):
        raise TaskUnreadable("the stored task failed authentication; it was not returned") from None


async def read_task(session: AsyncSession, ctx: Any, keys: SqlDataKeyStore, principal: Principal, task_id: Any,
                    meta: AccessMeta) -> dict[str, Any]:
    task, project = await _load_task(session, principal, task_id)
    if not policy.can_read_tasks(principal, project):
        raise Forbidden("your role on this project does not allow reading tasks")
    view = task_view(task, await _decrypt(keys, session, task))
    await audit_read(session, ctx, principal, action="task.read", resource_type="task", resource_id=task.id,
                     org_id=project.org_id, project_id=project.id, meta=meta)
    return view


async def read_original(session: AsyncSession, ctx: Any, keys: SqlDataKeyStore, principal: Principal,
                        task_id: Any, meta: AccessMeta) -> dict[str, Any]:
    task, project = await _load_task(session, principal, task_id)
    if not policy.can_read_original(principal, project):
        await audit_read(session, ctx, principal, action="task.read_original", resource_type="task",
                         resource_id=task.id, org_id=project.org_id, project_id=project.id, meta=meta,
                         outcome="denied")
        raise Forbidden("only organisation admins read unredacted originals")
    original = await _decrypt(keys, session, task, original=True)
    await audit_read(session, ctx, principal, action="task.read_original", resource_type="task",
                     resource_id=task.id, org_id=project.org_id, project_id=project.id, meta=meta)
    return {"id": str(task.id), "project_id": str(task.project_id), "original": original}


async def list_tasks(session: AsyncSession, ctx: Any, keys: SqlDataKeyStore, principal: Principal,
                     project_id: Any, meta: AccessMeta, *, limit: int = 50, cursor: str | None = None,
                     import_id: str | None = None, has_pii: bool | None = None,
                     schema_version: int | None = None, pseudonym: str | None = None,
                     include_data: bool = False) -> dict[str, Any]:
    project = await get_project(session, principal, project_id)
    if not policy.can_read_tasks(principal, project):
        raise Forbidden("your role on this project does not allow reading tasks")
    stmt = (sa.select(Task).where(Task.project_id == project.id, Task.erased_at.is_(None))
            .order_by(Task.created_at, Task.id).limit(limit + 1))
    if cursor:
        try:
            created, _, last_id = cursor.partition("|")
            stmt = stmt.where(sa.tuple_(Task.created_at, Task.id) >
                              sa.tuple_(sa.literal(datetime.fromisoformat(created), sa.DateTime(timezone=True)),
                                        sa.literal(uuid.UUID(last_id), sa.Uuid)))
        except ValueError:
            raise NotFound("invalid cursor") from None
    if import_id:
        stmt = stmt.where(Task.import_id == _task_id(import_id))
    if has_pii is not None:
        empty = sa.cast(sa.literal("{}"), Task.pii_counts.type)
        stmt = stmt.where(Task.pii_counts != empty if has_pii else Task.pii_counts == empty)
    if schema_version is not None:
        stmt = stmt.where(Task.schema_version == schema_version)
    if pseudonym:
        stmt = stmt.where(Task.id.in_(sa.select(TaskPseudonym.task_id).where(
            TaskPseudonym.project_id == project.id, TaskPseudonym.pseudonym == pseudonym)))
    tasks = (await session.execute(stmt)).scalars().all()
    page = list(tasks[:limit])
    items = []
    for task in page:
        item = {"id": str(task.id), "schema_version": task.schema_version, "pii_counts": task.pii_counts,
                "has_predictions": task.has_predictions,
                "import_id": str(task.import_id) if task.import_id else None,
                "created_at": task.created_at.isoformat()}
        if include_data:
            item.update(task_view(task, await _decrypt(keys, session, task)))
        items.append(item)
    if include_data and page:
        await audit_read(session, ctx, principal, action="task.list_read", resource_type="project",
                         resource_id=project.id, org_id=project.org_id, project_id=project.id, meta=meta,
                         details={"task_ids": [str(t.id) for t in page]})
    next_cursor = None
    if len(tasks) > limit:
        last = page[-1]
        next_cursor = f"{last.created_at.isoformat()}|{last.id}"
    return {"items": items, "next_cursor": next_cursor}
