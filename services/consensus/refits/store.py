"""Reading and writing fitted worker models (the parameters the incremental update uses)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.refits.models import worker_models, worker_params
from services.consensus.results.compute import FittedModel

SCHEMA = worker_models.schema


async def latest_models(session: AsyncSession, pairs: set[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], FittedModel]:
    """The newest model header per (project, control); worker parameters are joined in per task later."""
    if not pairs:
        return {}
    ps, cs = zip(*sorted(pairs))
    rows = (await session.execute(sa.text(f"""
        SELECT DISTINCT ON (m.project_id, m.control) m.project_id, m.control, m.version, m.method, m.classes,
               m.log_class_prior, m.default_log_confusion, m.mean_accuracy, m.stats->'tie_order' AS tie_order
        FROM {SCHEMA}.worker_models AS m
        JOIN unnest(CAST(:ps AS uuid[]), CAST(:cs AS text[])) AS k(project_id, control)
          ON m.project_id = k.project_id AND m.control = k.control
        ORDER BY m.project_id, m.control, m.version DESC"""),
        {"ps": [str(p) for p in ps], "cs": list(cs)})).all()
    return {(r.project_id, r.control): FittedModel(
        version=r.version, method=r.method, classes=r.classes, log_class_prior=np.asarray(r.log_class_prior),
        default_log_confusion=np.asarray(r.default_log_confusion), mean_accuracy=r.mean_accuracy,
        tie_order=r.tie_order) for r in rows}


async def latest_model_row(session: AsyncSession, project_id: uuid.UUID, control: str) -> Any:
    return (await session.execute(sa.select(worker_models).where(
        worker_models.c.project_id == project_id, worker_models.c.control == control)
        .order_by(worker_models.c.version.desc()).limit(1))).first()


async def save_model(session: AsyncSession, *, project_id: uuid.UUID, control: str, method: str, classes: list,
                     log_class_prior: np.ndarray, default_log_confusion: np.ndarray, mean_accuracy: float,
                     max_label_id: int, n_labels: int, n_tasks: int, n_workers: int, fit_seconds: float,
                     stats: dict[str, Any], workers: list[dict[str, Any]]) -> int:
    """Store a new version (previous + 1) with its per-annotator parameters; returns the version."""
    current = (await session.execute(sa.select(sa.func.max(worker_models.c.version)).where(
        worker_models.c.project_id == project_id, worker_models.c.control == control))).scalar() or 0
    version = current + 1
    await session.execute(sa.insert(worker_models).values(
        project_id=project_id, control=control, version=version, method=method, classes=classes,
        log_class_prior=_finite(log_class_prior), default_log_confusion=_finite(default_log_confusion),
        mean_accuracy=mean_accuracy, max_label_id=max_label_id, n_labels=n_labels, n_tasks=n_tasks,
        n_workers=n_workers, fit_seconds=fit_seconds, stats=stats))
    if workers:
        rows = [{"project_id": str(project_id), "control": control, "model_version": version,
                 "annotator_id": w["annotator_id"], "log_confusion": _finite(w["log_confusion"]),
                 "confusion": np.asarray(w["confusion"]).tolist(), "skill": float(w["skill"]),
                 "accuracy": float(w["accuracy"]), "n_labels": int(w["n_labels"])} for w in workers]
        await session.execute(sa.text(f"""
            INSERT INTO {SCHEMA}.worker_params (project_id, control, model_version, annotator_id, log_confusion,
                                               confusion, skill, accuracy, n_labels)
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(project_id uuid, control text,
                 model_version int, annotator_id text, log_confusion jsonb, confusion jsonb, skill float8,
                 accuracy float8, n_labels int)"""), {"rows": json.dumps(rows)})
    # Older parameter sets are not needed by anyone once a newer one is committed; keep one back for readers.
    await session.execute(sa.delete(worker_params).where(
        worker_params.c.project_id == project_id, worker_params.c.control == control,
        worker_params.c.model_version < version - 1))
    return version


def _finite(values: Any) -> list:
    """JSON has no -inf: a log probability of zero is stored as a very small finite number."""
    arr = np.asarray(values, dtype=np.float64)
    return np.nan_to_num(arr, nan=-700.0, neginf=-700.0, posinf=700.0).tolist()
