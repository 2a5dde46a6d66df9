"""The prediction store: bulk upserts from `predictions.imported`, per-project reads for refits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.db import rows_in_slices
from services.consensus.labels.service import TaskKey
from services.consensus.predictions.models import predictions

SCHEMA = predictions.schema
MODEL_VERSION_CHARS = 200


@dataclass
class NewPrediction:
    key: TaskKey
    value: Any  # a class value (already normalised by `compute.categorical_value`)
    score: float | None
    model_version: str | None


# One statement: upsert every prediction (the latest wins) and return the keys whose task already has labels,
# so the handler recomputes only those.
_UPSERT = sa.text(f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(project_id uuid, task_id text, control text,
             model_version text, value jsonb, score float8)),
    up AS (
        INSERT INTO {SCHEMA}.predictions AS p (project_id, task_id, control, model_version, value, score)
        SELECT project_id, task_id, control, model_version, value, score FROM input
        ON CONFLICT (project_id, task_id, control) DO UPDATE SET model_version = excluded.model_version,
            value = excluded.value, score = excluded.score, received_at = now()
        RETURNING p.project_id, p.task_id, p.control)
    SELECT up.project_id, up.task_id, up.control FROM up
    WHERE EXISTS (SELECT 1 FROM {SCHEMA}.labels AS l WHERE l.project_id = up.project_id AND l.task_id = up.task_id
                                                       AND l.control = up.control AND NOT l.superseded)""")


async def store_predictions(session: AsyncSession, new: Sequence[NewPrediction]) -> list[TaskKey]:
    """Upsert the predictions (one per key: the caller keeps the last of duplicates); returns the keys of tasks
    that already have labels, whose consensus the new prior may change."""
    if not new:
        return []
    rows = [{"project_id": str(n.key.project_id), "task_id": n.key.task_id, "control": n.key.control,
             "model_version": n.model_version[:MODEL_VERSION_CHARS] if n.model_version else None,
             "value": n.value, "score": n.score} for n in new]
    labelled = (await session.execute(_UPSERT, {"rows": orjson.dumps(rows).decode()})).all()
    return sorted(TaskKey(r.project_id, r.task_id, r.control) for r in labelled)


async def project_predictions(session: AsyncSession, project_id: uuid.UUID,
                              control: str) -> dict[str, tuple[Any, float | None]]:
    """task -> (predicted value, score) for one control of a project."""
    rows = await rows_in_slices(session, sa.select(predictions.c.task_id, predictions.c.value, predictions.c.score)
                                .where(predictions.c.project_id == project_id, predictions.c.control == control))
    return {r.task_id: (r.value, r.score) for r in rows}
