"""The incremental update of a batch of submissions in three set-based statements, whatever the batch size.

At hundreds of submissions per second the time goes in round trips and per-task Python, not in the database.
One batch (one transaction of the consumer) runs:

1. `lock_and_load_configs`: the advisory locks of every task in the batch (sorted: no deadlock) and the
   projects' configurations, in one statement.
2. `store_and_load_evidence`: the multi-row label insert, the latest fitted model of each (project, control),
   and every touched task's labels (the stored ones plus the ones just inserted), gold, reviews, model
   prediction and current result, in one statement. It runs after the locks, so its snapshot holds every
   committed label of the tasks; which label of an annotator is superseded is decided in Python from that
   snapshot.
3. `write_and_announce`: superseded flags, the new result versions with their history rows, the outbox rows
   announcing them and the NOTIFY that wakes the relay, in one statement.

In between, `compute_results` evaluates the posteriors of all categorical tasks of a (project, control) in one
vectorised step (the same formulas as `compute.categorical_result`, one task at a time, which the other
tasks - other label types, gold, reviews, vote methods, classes the model has not seen - still use).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.aggregation import UNREACHABLE
from services.consensus.aggregation import labels_needed as aggregation_labels_needed
from services.consensus.db import outbox
from services.consensus.labels.service import NewLabel, TaskKey
from services.consensus.projects.service import ProjectConfig
from services.consensus.results import compute
from services.consensus.results.compute import FittedModel, Review, TaskResult
from services.consensus.results.models import consensus_results
from services.consensus.results.service import (TaskEvidence, Written, _classes, _maybe_class, changed, compute_task,
                                                updated_envelopes)
from shared.events.outbox import notify_channel

log = logging.getLogger("quorum.consensus.results")

SCHEMA = consensus_results.schema

_LOCK_AND_CONFIGS = sa.text(f"""
    WITH locked AS (SELECT count(pg_advisory_xact_lock(k)) AS n
                    FROM (SELECT unnest(CAST(:locks AS bigint[])) AS k ORDER BY 1) AS s)
    SELECT p.* FROM locked LEFT JOIN {SCHEMA}.projects AS p ON p.project_id = ANY(CAST(:projects AS uuid[]))""")

# kind | project_id | task_id | control | who | value | num | extra | score | at
# Every table is reached through LATERAL lookups on its index (OFFSET 0 keeps the planner from flattening
# them): it guesses 100 rows for a recordset and would otherwise hash-join against whole tables. The labels'
# ORDER BY makes the task index win even before the table has statistics.
_STORE_AND_LOAD = sa.text(f"""
    WITH new AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(annotation_id text, project_id uuid,
             task_id text, control text, annotator_id text, label_type text, value jsonb, submitted_at timestamptz)),
    ins AS (
        INSERT INTO {SCHEMA}.labels (annotation_id, project_id, task_id, control, annotator_id, label_type, value,
                                     submitted_at)
        SELECT annotation_id, project_id, task_id, control, annotator_id, label_type, value, submitted_at FROM new
        ON CONFLICT (annotation_id) DO NOTHING
        RETURNING id, annotation_id, project_id, task_id, control, annotator_id, value, submitted_at),
    keys AS MATERIALIZED (SELECT DISTINCT project_id, task_id, control FROM new),
    mv AS MATERIALIZED (
        SELECT m.* FROM (SELECT DISTINCT project_id, control FROM new) AS k
        CROSS JOIN LATERAL (
            SELECT w.project_id, w.control, w.version, w.method, w.classes, w.log_class_prior,
                   w.default_log_confusion, w.mean_accuracy, w.stats->'tie_order' AS tie_order
            FROM {SCHEMA}.worker_models AS w WHERE w.project_id = k.project_id AND w.control = k.control
            ORDER BY w.version DESC LIMIT 1) AS m),
    labelled AS (
        SELECT 'new' AS kind, id, project_id, task_id, control, annotator_id, value, submitted_at FROM ins
        UNION ALL
        SELECT 'label', l.id, l.project_id, l.task_id, l.control, l.annotator_id, l.value, l.submitted_at
        FROM keys CROSS JOIN LATERAL (
            SELECT * FROM {SCHEMA}.labels AS l WHERE l.project_id = keys.project_id AND l.task_id = keys.task_id
                                                 AND l.control = keys.control AND NOT l.superseded
            ORDER BY l.annotator_id OFFSET 0) AS l)
    SELECT x.kind, x.project_id, x.task_id, x.control, x.annotator_id AS who, x.value, x.id AS num,
           wp.log_confusion AS extra, wp.skill AS score, x.submitted_at AS at
    FROM labelled AS x
    LEFT JOIN mv ON mv.project_id = x.project_id AND mv.control = x.control
    LEFT JOIN LATERAL (
        SELECT wp.log_confusion, wp.skill FROM {SCHEMA}.worker_params AS wp
        WHERE wp.project_id = x.project_id AND wp.control = x.control AND wp.model_version = mv.version
          AND wp.annotator_id = x.annotator_id OFFSET 0) AS wp ON true
    UNION ALL
    SELECT 'gold', g.project_id, g.task_id, g.control, NULL, g.value, NULL, NULL, NULL, NULL
    FROM keys CROSS JOIN LATERAL (
        SELECT * FROM {SCHEMA}.gold_labels AS g WHERE g.project_id = keys.project_id AND g.task_id = keys.task_id
                                                  AND g.control = keys.control OFFSET 0) AS g
    UNION ALL
    SELECT 'review', r.project_id, r.task_id, keys.control, r.verdict, l.value, NULL, r.corrected_value, NULL,
           NULL
    FROM keys CROSS JOIN LATERAL (
        SELECT * FROM {SCHEMA}.reviews AS r WHERE r.project_id = keys.project_id AND r.task_id = keys.task_id
        OFFSET 0) AS r
    CROSS JOIN LATERAL (
        SELECT l.value FROM {SCHEMA}.labels AS l WHERE l.annotation_id = r.annotation_id AND l.control = keys.control
        UNION ALL
        SELECT i.value FROM ins AS i WHERE i.annotation_id = r.annotation_id AND i.control = keys.control) AS l
    UNION ALL
    SELECT 'prediction', p.project_id, p.task_id, p.control, NULL, p.value, NULL, NULL, p.score, NULL
    FROM keys CROSS JOIN LATERAL (
        SELECT * FROM {SCHEMA}.predictions AS p WHERE p.project_id = keys.project_id AND p.task_id = keys.task_id
                                                  AND p.control = keys.control OFFSET 0) AS p
    UNION ALL
    SELECT 'current', c.project_id, c.task_id, c.control, NULL, c.label, c.version,
           jsonb_build_object('confidence', c.confidence, 'n_labels', c.n_labels, 'status', c.status,
                              'labels_needed', c.labels_needed, 'model_version', c.model_version,
                              'low_confidence', c.low_confidence, 'method', c.method), NULL, NULL
    FROM keys CROSS JOIN LATERAL (
        SELECT * FROM {SCHEMA}.consensus_results AS c
        WHERE c.project_id = keys.project_id AND c.task_id = keys.task_id AND c.control = keys.control
        OFFSET 0) AS c
    UNION ALL
    SELECT 'model', mv.project_id, NULL, mv.control, mv.method, mv.classes, mv.version,
           jsonb_build_object('log_class_prior', mv.log_class_prior,
                              'default_log_confusion', mv.default_log_confusion,
                              'tie_order', mv.tie_order), mv.mean_accuracy, NULL
    FROM mv""")

_RESULT_COLS = ("label", "confidence", "posterior", "method", "n_labels", "low_confidence", "labels_needed", "status",
                "model_version", "source", "max_label_id")
_COLS = ", ".join(_RESULT_COLS)

# Its own statement, run only when a batch has re-submissions: as a CTE of the write below it ran on every
# batch, and a generic plan made while `labels` was small (a seq scan) stayed cached as the table grew.
# It runs with a custom plan, made from the table's current size each time.
_SUPERSEDE = sa.text(f"UPDATE {SCHEMA}.labels SET superseded = true "
                     "WHERE id = ANY(CAST(:ids AS bigint[])) AND NOT superseded")

# The announcing envelope is built in Python before the version is known (another writer - a refit - may
# have bumped it); the statement writes the version it assigned into the envelope it stages.
_WRITE_AND_ANNOUNCE = sa.text(f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(project_id uuid, task_id text, control text,
             label jsonb, confidence float8, posterior jsonb, method text, n_labels int, low_confidence bool,
             labels_needed int, status text, model_version int, source text, max_label_id bigint, event_id text,
             envelope jsonb)),
    up AS (
        INSERT INTO {SCHEMA}.consensus_results AS c (project_id, task_id, control, version, {_COLS})
        SELECT project_id, task_id, control, 1, {_COLS} FROM input
        ON CONFLICT (project_id, task_id, control) DO UPDATE SET version = c.version + 1,
            {", ".join(f"{c} = excluded.{c}" for c in _RESULT_COLS)}, computed_at = now()
        WHERE c.max_label_id <= excluded.max_label_id
        RETURNING c.*),
    hist AS (
        INSERT INTO {SCHEMA}.consensus_history (project_id, task_id, control, version, {_COLS}, computed_at)
        SELECT project_id, task_id, control, version, {_COLS}, computed_at FROM up
        RETURNING project_id, task_id, control, version),
    staged AS (
        INSERT INTO {outbox.schema}.outbox (event_id, stream, type, envelope)
        SELECT i.event_id, :stream, 'consensus.updated',
               CAST(jsonb_set(i.envelope, '{{payload,result_version}}', to_jsonb(up.version)) AS text)
        FROM up JOIN input AS i ON i.project_id = up.project_id AND i.task_id = up.task_id
                               AND i.control = up.control
        RETURNING 1)
    SELECT project_id, task_id, control, version FROM hist
    UNION ALL
    SELECT NULL, NULL, NULL, NULL FROM (SELECT pg_notify(:channel, '') FROM staged LIMIT 1) AS woken""")


def _json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


async def lock_and_load_configs(session: AsyncSession, keys: Iterable[TaskKey],
                                project_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ProjectConfig]:
    """Take the tasks' advisory locks (held to commit) and read the projects' configs (defaults if unknown)."""
    project_ids = sorted(set(project_ids))
    rows = (await session.execute(_LOCK_AND_CONFIGS, {
        "locks": sorted({k.lock_id() for k in keys}), "projects": [str(p) for p in project_ids]})).all()
    configs = {r.project_id: ProjectConfig.from_row(r) for r in rows if r.project_id is not None}
    for pid in project_ids:
        configs.setdefault(pid, ProjectConfig(project_id=pid))
    return configs


@dataclass
class _Candidate:
    label_id: int
    annotator: str
    value: Any
    submitted_at: datetime
    log_confusion: Any
    skill: float | None


@dataclass
class BatchEvidence:
    evidence: dict[TaskKey, TaskEvidence]
    models: dict[tuple[uuid.UUID, str], FittedModel]
    fresh: list[TaskKey]  # tasks that got a new label
    n_new: int
    superseded: list[int] = field(default_factory=list)  # label ids an annotator's later label replaces


async def store_and_load_evidence(session: AsyncSession, new: Sequence[NewLabel]) -> BatchEvidence:
    """Insert the labels (a known annotation id is a no-op) and load what the touched tasks' update needs.

    Must run after `lock_and_load_configs` in the same transaction: the locks make the snapshot complete.
    The latest submission per annotator and task wins (ties: the later stored label); the others are returned
    as `superseded` for `write_and_announce` to flag.
    """
    rows = [{"annotation_id": n.annotation_id, "project_id": str(n.key.project_id), "task_id": n.key.task_id,
             "control": n.key.control, "annotator_id": n.annotator_id, "label_type": n.label_type,
             "value": n.value, "submitted_at": n.submitted_at.isoformat()} for n in new]
    result = (await session.execute(_STORE_AND_LOAD, {"rows": _json(rows)})).all()
    candidates: dict[TaskKey, list[_Candidate]] = defaultdict(list)
    evidence: dict[TaskKey, TaskEvidence] = {}
    models: dict[tuple[uuid.UUID, str], FittedModel] = {}
    fresh: set[TaskKey] = set()
    n_new = 0
    for r in result:
        kind = r.kind
        if kind == "model":
            models[(r.project_id, r.control)] = FittedModel(
                version=r.num, method=r.who, classes=r.value,
                log_class_prior=np.asarray(r.extra["log_class_prior"], dtype=np.float64),
                default_log_confusion=np.asarray(r.extra["default_log_confusion"], dtype=np.float64),
                mean_accuracy=r.score, tie_order=r.extra.get("tie_order"))
            continue
        key = TaskKey(r.project_id, r.task_id, r.control)
        ev = evidence.get(key)
        if ev is None:
            ev = evidence[key] = TaskEvidence()
        if kind == "new" or kind == "label":
            candidates[key].append(_Candidate(r.num, r.who, r.value, r.at, r.extra, r.score))
            if kind == "new":
                fresh.add(key)
                n_new += 1
        elif kind == "gold":
            ev.gold = r.value
        elif kind == "review":
            ev.reviews.append(Review(verdict=r.who, annotation_value=r.value, corrected_value=r.extra))
        elif kind == "prediction":
            ev.prediction = (r.value, r.score)
        else:
            ev.current = {"label": r.value, **r.extra}
            ev.current_version = r.num
    superseded: list[int] = []
    for key, labels in candidates.items():
        latest: dict[str, _Candidate] = {}
        for c in labels:
            best = latest.get(c.annotator)
            if best is None or (c.submitted_at, c.label_id) > (best.submitted_at, best.label_id):
                if best is not None:
                    superseded.append(best.label_id)
                latest[c.annotator] = c
            else:
                superseded.append(c.label_id)
        ev = evidence[key]
        for c in sorted(latest.values(), key=lambda c: c.label_id):
            ev.answers.append((c.annotator, c.value))
            ev.max_label_id = max(ev.max_label_id, c.label_id)
            if c.log_confusion is not None:
                ev.worker_log_confusion[c.annotator] = c.log_confusion
                ev.worker_skill[c.annotator] = c.skill
    return BatchEvidence(evidence=evidence, models=models, fresh=sorted(fresh), n_new=n_new, superseded=superseded)


def compute_results(configs: dict[uuid.UUID, ProjectConfig], keys: Sequence[TaskKey],
                    evidence: dict[TaskKey, TaskEvidence],
                    models: dict[tuple[uuid.UUID, str], FittedModel]) -> list[tuple[TaskKey, TaskResult, int]]:
    """The tasks' new results, only those that changed: (key, result, max label id)."""
    out: list[tuple[TaskKey, TaskResult, int]] = []
    groups: dict[tuple[uuid.UUID, str], list[tuple[TaskKey, list]]] = defaultdict(list)
    single: list[TaskKey] = []
    for key in keys:
        config = configs[key.project_id]
        ev = evidence.get(key) or TaskEvidence()
        control = config.controls.get(key.control)
        if (control is None or compute.label_kind(control.label_type) != compute.CATEGORICAL or ev.gold is not None
                or ev.reviews or not ev.answers or config.method in compute.VOTING_METHODS):
            single.append(key)
            continue
        try:
            values = [compute.categorical_value(v) for _, v in ev.answers]
        except compute.InvalidValue:
            single.append(key)
            continue
        groups[(key.project_id, key.control)].append((key, values))
    for (project_id, control), members in groups.items():
        single.extend(_categorical_group(configs[project_id], control, members, evidence,
                                         models.get((project_id, control)), out))
    for key in single:
        ev = evidence.get(key) or TaskEvidence()
        try:
            result = compute_task(configs[key.project_id], key, ev, models.get((key.project_id, key.control)))
        except (compute.InvalidValue, ValueError) as exc:
            log.warning("cannot aggregate task %s/%s (%s): %s", key.task_id, key.control, key.project_id, exc)
            continue
        if result is not None and changed(ev, result):
            out.append((key, result, ev.max_label_id))
    return out


def _categorical_group(config: ProjectConfig, control: str, members: list[tuple[TaskKey, list]],
                       evidence: dict[TaskKey, TaskEvidence], model: FittedModel | None,
                       out: list[tuple[TaskKey, TaskResult, int]]) -> list[TaskKey]:
    """Posteriors of one (project, control)'s tasks in one step; returns the tasks it leaves to `compute_task`
    (an answer outside the classes the group shares gives that task classes of its own)."""
    classes = _classes(config.controls[control].classes, model, [], None)
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    rest = [key for key, values in members if any(v not in index for v in values)]
    if rest:
        members = [(key, values) for key, values in members if all(v in index for v in values)]
    if not members or k == 0:
        return rest + [key for key, _ in members]
    # evidence tables (label, truth) of log P(label | truth): row 0 for annotators the fit has not seen
    if model is not None and len(model.classes) == k and all(a == b for a, b in zip(model.classes, classes)):
        log_prior = np.asarray(model.log_class_prior, dtype=np.float64)
        tables = [np.asarray(model.default_log_confusion, dtype=np.float64).T]
        fitted = True
    else:
        accuracy = model.mean_accuracy if model is not None else compute.DEFAULT_ACCURACY
        log_prior = np.full(k, -math.log(k))
        tables = [compute.one_coin_log_confusion(k, min(max(accuracy, 1.0 / k + 1e-3), 0.999)).T]
        fitted = False
    # Summed in the order `TaskPosteriorModel.posterior` sums (prior + fitted annotators, then the others), so a
    # tie comes out exactly as it does one task at a time.
    table_of: dict[str, int] = {}
    known_tasks, known_tables, known_labels = [], [], []
    other_tasks, other_labels = [], []
    for t, (key, values) in enumerate(members):
        ev = evidence[key]
        for (annotator, _), value in zip(ev.answers, values):
            if fitted and annotator in ev.worker_log_confusion:
                row = table_of.get(annotator)
                if row is None:
                    row = table_of[annotator] = len(tables)
                    tables.append(np.asarray(ev.worker_log_confusion[annotator], dtype=np.float64).T)
                known_tasks.append(t)
                known_tables.append(row)
                known_labels.append(index[value])
            else:
                other_tasks.append(t)
                other_labels.append(index[value])
    acc = log_prior + _sum_by_task(np.stack(tables)[known_tables, known_labels], known_tasks, len(members), k)
    acc += _sum_by_task(tables[0][other_labels], other_tasks, len(members), k)
    for t, (key, _) in enumerate(members):  # a model's prediction: a prior added last, as the per-task model does
        predicted = evidence[key].prediction
        if predicted is not None:
            vector = compute.prediction_vector(index, _maybe_class(predicted[0]), predicted[1], task=key.task_id)
            if vector is not None:
                acc[t] += compute.PREDICTION_WEIGHT * np.log(np.clip(vector, 1e-6, 1.0))
    posterior = np.empty_like(acc)
    for i, row in enumerate(acc):  # row by row: numpy's exp over a long array may differ in the last bit
        row -= row.max()
        np.exp(row, out=row)
        posterior[i] = row / row.sum()

    n_labels = np.array([len(values) for _, values in members])
    top = np.argmax(posterior, axis=1)
    confidence = posterior[np.arange(len(members)), top]
    target, max_labels = config.target_confidence, config.max_labels
    low = confidence < target
    room = np.maximum(max_labels - n_labels, 0)
    needed = np.zeros(len(members), dtype=np.int64)
    rows = np.flatnonzero(low & (room > 0))
    if rows.size and k >= 2:
        if model is not None and len(model.classes) == k:
            quality: Any = np.exp(np.asarray(model.default_log_confusion, dtype=np.float64))
        else:
            quality = model.mean_accuracy if model is not None else compute.DEFAULT_ACCURACY
        estimate = np.atleast_1d(aggregation_labels_needed(posterior[rows], target, quality, max_labels=max_labels))
        needed[rows] = np.where(estimate == UNREACHABLE, room[rows], np.minimum(estimate, room[rows]))
    model_version = model.version if model is not None else None
    for i, (key, _) in enumerate(members):
        n = int(n_labels[i])
        is_low = bool(low[i])
        result = TaskResult(
            label=classes[top[i]], confidence=float(confidence[i]),
            posterior=[[c, float(p)] for c, p in zip(classes, posterior[i].tolist())], method=config.method,
            n_labels=n, low_confidence=is_low, labels_needed=int(needed[i]) if is_low else 0,
            status="resolved" if not is_low else ("needs_more_labels" if n < max_labels else "insufficient"),
            model_version=model_version)
        ev = evidence[key]
        if changed(ev, result):
            out.append((key, result, ev.max_label_id))
    return rest


def _sum_by_task(rows: np.ndarray, tasks: list[int], n_tasks: int, k: int) -> np.ndarray:
    """Per task, the sum of its rows, added one after the other in their order (as `ndarray.sum` does for the
    few rows of one task; `np.add.reduceat` can round differently). `tasks` is sorted."""
    out = np.zeros((n_tasks, k))
    if not tasks:
        return out
    order = np.asarray(tasks)
    rows = rows.reshape(len(tasks), k)
    starts = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])
    position = np.arange(len(tasks)) - np.repeat(starts, np.diff(np.r_[starts, len(tasks)]))
    for j in range(int(position.max()) + 1):
        at = position == j
        out[order[at]] += rows[at]
    return out


async def write_and_announce(session: AsyncSession, items: Sequence[tuple[TaskKey, TaskResult, int]],
                             configs: dict[uuid.UUID, ProjectConfig], *, stream: str, source: str = "incremental",
                             superseded: Sequence[int] = ()) -> list[Written]:
    """Flag superseded labels, write new versions (current row + history) and stage `consensus.updated` for
    each, with one NOTIFY. A result computed from older labels than the stored one (a refit racing a
    submission) is neither written nor announced."""
    if not items and not superseded:
        return []
    rows = []
    envelopes = updated_envelopes(configs, [Written(key=key, result=r, version=0, source=source)
                                            for key, r, _ in items])
    for (key, r, max_id), envelope in zip(items, envelopes, strict=True):
        rows.append({"project_id": str(key.project_id), "task_id": key.task_id, "control": key.control,
                     "label": r.label, "confidence": r.confidence, "posterior": r.posterior, "method": r.method,
                     "n_labels": r.n_labels, "low_confidence": r.low_confidence, "labels_needed": r.labels_needed,
                     "status": r.status, "model_version": r.model_version, "source": source, "max_label_id": max_id,
                     "event_id": envelope["id"], "envelope": envelope})
    if superseded:
        await session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
        await session.execute(_SUPERSEDE, {"ids": list(superseded)})
        await session.execute(sa.text("SET LOCAL plan_cache_mode = auto"))
    if not rows:
        return []
    written = (await session.execute(_WRITE_AND_ANNOUNCE, {
        "rows": _json(rows), "stream": stream, "channel": notify_channel(outbox)})).all()
    by_key = {k: r for k, r, _ in items}
    out = []
    for row in written:
        if row.project_id is None:
            continue
        key = TaskKey(row.project_id, row.task_id, row.control)
        out.append(Written(key=key, result=by_key[key], version=row.version, source=source))
    return out
