"""The label store: task keys and locks, gold labels, reviews, and whole-project reads (re-submissions are
superseded by the batch path, `results.batch`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.db import row_slices
from services.consensus.labels.models import gold_labels, labels, reviews

SCHEMA = labels.schema


@dataclass(frozen=True, order=True)
class TaskKey:
    project_id: uuid.UUID
    task_id: str
    control: str

    def lock_id(self) -> int:
        digest = hashlib.blake2b(f"{self.project_id}:{self.task_id}:{self.control}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)


@dataclass
class NewLabel:
    annotation_id: str
    key: TaskKey
    annotator_id: str
    label_type: str
    value: Any
    submitted_at: datetime


async def lock_tasks(session: AsyncSession, keys: Iterable[TaskKey]) -> None:
    """Serialise updates of the same task across consumers and replicas (transaction-scoped, sorted: no deadlock)."""
    ids = sorted({k.lock_id() for k in keys})
    if not ids:
        return
    await session.execute(sa.text(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(CAST(:ids AS bigint[])) AS k ORDER BY 1) AS s"),
        {"ids": ids})


async def set_gold(session: AsyncSession, key: TaskKey, value: Any) -> None:
    stmt = pg_insert(gold_labels).values(project_id=key.project_id, task_id=key.task_id, control=key.control,
                                         value=value)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[gold_labels.c.project_id, gold_labels.c.task_id, gold_labels.c.control],
        set_={"value": stmt.excluded.value, "set_at": sa.func.now()}))


async def store_review(session: AsyncSession, *, project_id: uuid.UUID, task_id: str, annotation_id: str,
                       reviewer_id: str, verdict: str, corrected_value: Any) -> list[TaskKey]:
    """Upsert the reviewer's verdict on an annotation; returns the task keys it is evidence for."""
    stmt = pg_insert(reviews).values(project_id=project_id, task_id=task_id, annotation_id=annotation_id,
                                     reviewer_id=reviewer_id, verdict=verdict, corrected_value=corrected_value)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[reviews.c.annotation_id, reviews.c.reviewer_id],
        set_={"verdict": stmt.excluded.verdict, "corrected_value": stmt.excluded.corrected_value,
              "reviewed_at": sa.func.now()}))
    controls = (await session.execute(sa.select(labels.c.control).where(
        labels.c.annotation_id == annotation_id, labels.c.project_id == project_id))).scalars().all()
    return [TaskKey(project_id, task_id, c) for c in controls]


@dataclass
class ProjectLabels:
    """Current (not superseded) labels of one control across a project, as parallel columns."""

    ids: list[int]
    tasks: list[str]
    annotators: list[str]
    values: list[Any]
    submitted_at: list[datetime]  # empty when read without times
    max_label_id: int


async def project_labels(session: AsyncSession, project_id: uuid.UUID, control: str, *,
                         with_times: bool = True) -> ProjectLabels:
    """`with_times=False` (a refit): no submission times, which the fit does not use and which cost the most to
    decode and to hand to the fit process."""
    columns = [labels.c.id, labels.c.task_id, labels.c.annotator_id, labels.c.value]
    if with_times:
        columns.append(labels.c.submitted_at)
    out = ProjectLabels(ids=[], tasks=[], annotators=[], values=[], submitted_at=[], max_label_id=0)
    async for rows in row_slices(session, sa.select(*columns).where(
            labels.c.project_id == project_id, labels.c.control == control, labels.c.superseded.is_(False))
            .order_by(labels.c.id)):
        columns_of_slice = list(zip(*rows))
        out.ids.extend(columns_of_slice[0])
        out.tasks.extend(columns_of_slice[1])
        out.annotators.extend(columns_of_slice[2])
        out.values.extend(columns_of_slice[3])
        if with_times:
            out.submitted_at.extend(columns_of_slice[4])
    out.max_label_id = max(out.ids, default=0)
    return out


async def project_gold(session: AsyncSession, project_id: uuid.UUID, control: str) -> dict[str, Any]:
    rows = (await session.execute(sa.select(gold_labels.c.task_id, gold_labels.c.value).where(
        gold_labels.c.project_id == project_id, gold_labels.c.control == control))).all()
    return {r.task_id: r.value for r in rows}


async def project_reviews(session: AsyncSession, project_id: uuid.UUID, control: str) -> list[tuple[str, str, Any, Any]]:
    """(task, verdict, reviewed annotation's value, corrected value) for the control's reviewed annotations."""
    rows = (await session.execute(
        sa.select(reviews.c.task_id, reviews.c.verdict, labels.c.value, reviews.c.corrected_value)
        .join(labels, labels.c.annotation_id == reviews.c.annotation_id)
        .where(reviews.c.project_id == project_id, labels.c.control == control))).all()
    return [(r.task_id, r.verdict, r.value, r.corrected_value) for r in rows]
