"""Recomputing tasks' consensus, storing it as a new version when it changed, and announcing it."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.events import PRODUCER, publish_many
from services.consensus.labels.service import TaskKey
from services.consensus.projects.service import ProjectConfig
from services.consensus.refits.store import latest_models
from services.consensus.results import compute
from services.consensus.results.compute import FittedModel, Review, TaskResult
from services.consensus.results.models import consensus_history, consensus_results
from shared.events.catalog import ConsensusUpdated
from shared.events.envelope import Envelope, new_event, new_event_ids

log = logging.getLogger("quorum.consensus.results")

SCHEMA = consensus_results.schema


@dataclass
class TaskEvidence:
    answers: list[tuple[str, Any]] = field(default_factory=list)
    worker_log_confusion: dict[str, Any] = field(default_factory=dict)
    worker_skill: dict[str, float] = field(default_factory=dict)
    max_label_id: int = 0
    gold: Any = None
    reviews: list[Review] = field(default_factory=list)
    prediction: tuple[Any, float | None] | None = None  # a model's (predicted value, score)
    current: dict[str, Any] | None = None
    current_version: int = 0


@dataclass
class Written:
    key: TaskKey
    result: TaskResult
    version: int
    source: str


async def load_evidence(session: AsyncSession, keys: Sequence[TaskKey],
                        models: dict[tuple[uuid.UUID, str], FittedModel]) -> dict[TaskKey, TaskEvidence]:
    """Labels (with each annotator's fitted parameters), gold, reviews, the model's prediction and the current
    result: one round trip."""
    pairs = sorted(models)
    rows = (await session.execute(sa.text(f"""
        WITH keys AS (SELECT * FROM unnest(CAST(:kp AS uuid[]), CAST(:kt AS text[]), CAST(:kc AS text[]))
                      AS k(project_id, task_id, control)),
             mv AS (SELECT * FROM unnest(CAST(:mp AS uuid[]), CAST(:mc AS text[]), CAST(:mv AS int[]))
                    AS m(project_id, control, version))
        SELECT 'label' AS kind, l.project_id, l.task_id, l.control, l.annotator_id AS who, l.value, l.id AS num,
               wp.log_confusion AS extra, wp.skill AS score
        FROM keys JOIN {SCHEMA}.labels AS l ON l.project_id = keys.project_id AND l.task_id = keys.task_id
                                           AND l.control = keys.control AND NOT l.superseded
        LEFT JOIN mv ON mv.project_id = l.project_id AND mv.control = l.control
        LEFT JOIN {SCHEMA}.worker_params AS wp ON wp.project_id = l.project_id AND wp.control = l.control
                                             AND wp.model_version = mv.version AND wp.annotator_id = l.annotator_id
        UNION ALL
        SELECT 'gold', g.project_id, g.task_id, g.control, NULL, g.value, NULL, NULL, NULL
        FROM keys JOIN {SCHEMA}.gold_labels AS g ON g.project_id = keys.project_id AND g.task_id = keys.task_id
                                                AND g.control = keys.control
        UNION ALL
        SELECT 'review', r.project_id, r.task_id, l.control, r.verdict, l.value, NULL, r.corrected_value, NULL
        FROM keys JOIN {SCHEMA}.reviews AS r ON r.project_id = keys.project_id AND r.task_id = keys.task_id
        JOIN {SCHEMA}.labels AS l ON l.annotation_id = r.annotation_id AND l.control = keys.control
        UNION ALL
        SELECT 'prediction', p.project_id, p.task_id, p.control, NULL, p.value, NULL, NULL, p.score
        FROM keys JOIN {SCHEMA}.predictions AS p ON p.project_id = keys.project_id AND p.task_id = keys.task_id
                                                AND p.control = keys.control
        UNION ALL
        SELECT 'current', c.project_id, c.task_id, c.control, NULL, c.label, c.version,
               jsonb_build_object('confidence', c.confidence, 'n_labels', c.n_labels, 'status', c.status,
                                  'labels_needed', c.labels_needed, 'model_version', c.model_version,
                                  'low_confidence', c.low_confidence, 'method', c.method), NULL
        FROM keys JOIN {SCHEMA}.consensus_results AS c ON c.project_id = keys.project_id
                                                      AND c.task_id = keys.task_id AND c.control = keys.control
        """), {
        "kp": [str(k.project_id) for k in keys], "kt": [k.task_id for k in keys], "kc": [k.control for k in keys],
        "mp": [str(p) for p, _ in pairs], "mc": [c for _, c in pairs], "mv": [models[p].version for p in pairs],
    })).all()
    out: dict[TaskKey, TaskEvidence] = {k: TaskEvidence() for k in keys}
    for r in rows:
        ev = out[TaskKey(r.project_id, r.task_id, r.control)]
        if r.kind == "label":
            ev.answers.append((r.who, r.value))
            ev.max_label_id = max(ev.max_label_id, r.num)
            if r.extra is not None:
                ev.worker_log_confusion[r.who] = r.extra
                ev.worker_skill[r.who] = r.score
        elif r.kind == "gold":
            ev.gold = r.value
        elif r.kind == "review":
            ev.reviews.append(Review(verdict=r.who, annotation_value=r.value, corrected_value=r.extra))
        elif r.kind == "prediction":
            ev.prediction = (r.value, r.score)
        else:
            ev.current = {"label": r.value, **r.extra}
            ev.current_version = r.num
    return out


def compute_task(config: ProjectConfig, key: TaskKey, ev: TaskEvidence, model: FittedModel | None) -> TaskResult | None:
    control = config.controls.get(key.control)
    kind = compute.label_kind(control.label_type) if control else None
    if kind is None or not ev.answers and ev.gold is None:
        return None
    if kind != compute.CATEGORICAL:
        return compute.other_result(kind, ev.answers, target=config.target_confidence,
                                    max_labels=config.max_labels, gold=ev.gold)
    answers = [(a, compute.categorical_value(v)) for a, v in ev.answers]
    gold = compute.categorical_value(ev.gold) if ev.gold is not None else None
    reviews = [Review(r.verdict, _maybe_class(r.annotation_value), _maybe_class(r.corrected_value))
               for r in ev.reviews]
    classes = _classes(control.classes, model, [v for _, v in answers], gold)
    prediction = None
    if ev.prediction is not None:
        value = _maybe_class(ev.prediction[0])
        prediction = compute.prediction_vector({c: i for i, c in enumerate(classes)}, value, ev.prediction[1],
                                               task=key.task_id)
    if model is not None:
        model = FittedModel(version=model.version, method=model.method, classes=model.classes,
                            log_class_prior=model.log_class_prior,
                            default_log_confusion=model.default_log_confusion, mean_accuracy=model.mean_accuracy,
                            worker_log_confusion={a: np.asarray(v) for a, v in ev.worker_log_confusion.items()},
                            worker_skill=ev.worker_skill, tie_order=model.tie_order)
    return compute.categorical_result(config.method, classes, answers, model, target=config.target_confidence,
                                      max_labels=config.max_labels, gold=gold, reviews=reviews,
                                      prediction=prediction)


def _maybe_class(value: Any) -> Any:
    if value is None:
        return None
    try:
        return compute.categorical_value(value)
    except compute.InvalidValue:
        return None


def _classes(configured: list | None, model: FittedModel | None, observed: list, gold: Any) -> list:
    from services.consensus.aggregation.matrix import _sorted_classes

    if model is not None and (configured is None or list(model.classes) == _sorted_classes(configured)):
        base = list(model.classes)
    else:
        base = list(configured or [])
    extra = [v for v in [*observed, gold] if v is not None and v not in base]
    return _sorted_classes(dict.fromkeys(base + extra)) if extra or model is None else base


def changed(ev: TaskEvidence, result: TaskResult) -> bool:
    cur = ev.current
    if cur is None:
        return True
    return (cur["label"] != result.label or not math.isclose(cur["confidence"], result.confidence, abs_tol=1e-9)
            or cur["n_labels"] != result.n_labels or cur["status"] != result.status
            or cur["labels_needed"] != result.labels_needed or cur["model_version"] != result.model_version
            or cur["method"] != result.method)


async def write_results(session: AsyncSession, items: Sequence[tuple[TaskKey, TaskResult, int]],
                        source: str) -> list[Written]:
    """New versions of the given results (current row + history). A result computed from older labels than
    the stored one (a refit racing a submission) is not written."""
    if not items:
        return []
    rows = [{"project_id": str(k.project_id), "task_id": k.task_id, "control": k.control,
             "label": r.label, "confidence": r.confidence, "posterior": r.posterior, "method": r.method,
             "n_labels": r.n_labels, "low_confidence": r.low_confidence, "labels_needed": r.labels_needed,
             "status": r.status, "model_version": r.model_version, "source": source, "max_label_id": max_id}
            for k, r, max_id in items]
    cols = ("label, confidence, posterior, method, n_labels, low_confidence, labels_needed, status, "
            "model_version, source, max_label_id")
    updates = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in cols.split(","))
    written = (await session.execute(sa.text(f"""
        WITH input AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(project_id uuid, task_id text, control text,
                 label jsonb, confidence float8, posterior jsonb, method text, n_labels int, low_confidence bool,
                 labels_needed int, status text, model_version int, source text, max_label_id bigint)),
        up AS (
            INSERT INTO {SCHEMA}.consensus_results AS c (project_id, task_id, control, version, {cols})
            SELECT project_id, task_id, control, 1, {cols} FROM input
            ON CONFLICT (project_id, task_id, control) DO UPDATE SET version = c.version + 1, {updates},
                computed_at = now()
            WHERE c.max_label_id <= excluded.max_label_id
            RETURNING c.*)
        INSERT INTO {SCHEMA}.consensus_history (project_id, task_id, control, version, {cols}, computed_at)
        SELECT project_id, task_id, control, version, {cols}, computed_at FROM up
        RETURNING project_id, task_id, control, version"""), {"rows": json.dumps(rows, allow_nan=False)})).all()
    by_key = {k: r for k, r, _ in items}
    out = []
    for row in written:
        key = TaskKey(row.project_id, row.task_id, row.control)
        out.append(Written(key=key, result=by_key[key], version=row.version, source=source))
    return out


def updated_event(config: ProjectConfig, w: Written) -> Envelope:
    r = w.result
    payload = ConsensusUpdated(task_id=w.key.task_id, project_id=str(w.key.project_id), control=w.key.control,
                               label=r.label, confidence=r.confidence, method=r.method, n_labels=r.n_labels,
                               result_version=w.version, low_confidence=r.low_confidence,
                               labels_needed=r.labels_needed, status=r.status, source=w.source,
                               model_version=r.model_version)
    return new_event("consensus.updated", payload, producer=PRODUCER, project_id=str(w.key.project_id),
                     org_id=str(config.org_id) if config.org_id else None)


def updated_envelopes(configs: dict[uuid.UUID, ProjectConfig], written: Sequence[Written]) -> list[dict[str, Any]]:
    """`updated_event(...).model_dump(mode="json")` for many results, built as plain dicts: the incremental path
    announces every changed task, and five pydantic passes per announcement were a tenth of its CPU. The shape
    is the catalog's (tests compare it with `updated_event` and validate it against the models)."""
    if not written:
        return []
    occurred = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = []
    for event_id, w in zip(new_event_ids(len(written)), written, strict=True):
        r, project_id = w.result, str(w.key.project_id)
        org_id = configs[w.key.project_id].org_id
        out.append({
            "id": event_id, "type": "consensus.updated", "version": 1, "occurred_at": occurred, "producer": PRODUCER,
            "org_id": str(org_id) if org_id else None, "project_id": project_id, "request_id": None,
            "payload": {"task_id": w.key.task_id, "project_id": project_id, "control": w.key.control, "label": r.label,
                        "confidence": float(r.confidence), "method": r.method, "n_labels": int(r.n_labels),
                        "result_version": w.version, "low_confidence": bool(r.low_confidence),
                        "labels_needed": int(r.labels_needed), "status": r.status, "source": w.source,
                        "model_version": r.model_version}})
    return out


async def recompute_and_publish(session: AsyncSession, keys: Iterable[TaskKey], configs: dict[uuid.UUID, ProjectConfig],
                                *, stream: str, source: str = "incremental") -> list[Written]:
    """The incremental update of the given tasks: compute from stored evidence, write changed ones, announce them."""
    keys = sorted(set(keys))
    pairs = {(k.project_id, k.control) for k in keys}
    models = await latest_models(session, pairs)
    evidence = await load_evidence(session, keys, models)
    items = []
    for key in keys:
        config = configs[key.project_id]
        ev = evidence[key]
        try:
            result = compute_task(config, key, ev, models.get((key.project_id, key.control)))
        except (compute.InvalidValue, ValueError) as exc:
            log.warning("cannot aggregate task %s/%s (%s): %s", key.task_id, key.control, key.project_id, exc)
            continue
        if result is not None and changed(ev, result):
            items.append((key, result, ev.max_label_id))
    written = await write_results(session, items, source)
    await publish_many(session, [updated_event(configs[w.key.project_id], w) for w in written], stream=stream)
    return written


# ---------------------------------------------------------------------------------------------------- reads

def result_out(row: Any) -> dict[str, Any]:
    return {"task_id": row.task_id, "control": row.control, "label": row.label, "confidence": row.confidence,
            "posterior": row.posterior, "method": row.method, "n_labels": row.n_labels,
            "low_confidence": row.low_confidence, "labels_needed": row.labels_needed, "status": row.status,
            "version": row.version, "model_version": row.model_version, "source": row.source,
            "computed_at": row.computed_at}


async def task_results(session: AsyncSession, project_id: uuid.UUID, task_id: str) -> list[dict[str, Any]]:
    rows = (await session.execute(sa.select(consensus_results).where(
        consensus_results.c.project_id == project_id, consensus_results.c.task_id == task_id)
        .order_by(consensus_results.c.control))).all()
    return [result_out(r) for r in rows]


async def task_history(session: AsyncSession, project_id: uuid.UUID, task_id: str) -> list[dict[str, Any]]:
    rows = (await session.execute(sa.select(consensus_history).where(
        consensus_history.c.project_id == project_id, consensus_history.c.task_id == task_id)
        .order_by(consensus_history.c.control, consensus_history.c.version))).all()
    return [result_out(r) for r in rows]


async def list_results(session: AsyncSession, project_id: uuid.UUID, *, control: str | None,
                       low_confidence: bool | None, status: str | None, after: tuple[str, str] | None,
                       limit: int) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    c = consensus_results.c
    query = sa.select(consensus_results).where(c.project_id == project_id)
    if control is not None:
        query = query.where(c.control == control)
    if low_confidence is not None:
        query = query.where(c.low_confidence.is_(low_confidence))
    if status is not None:
        query = query.where(c.status == status)
    if after is not None:
        query = query.where(sa.tuple_(c.task_id, c.control) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
    rows = (await session.execute(query.order_by(c.task_id, c.control).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [result_out(r) for r in rows], ((rows[-1].task_id, rows[-1].control) if more else None)
