"""Background refits: full model fits across a project, versioned; re-announce what changed; annotator quality.

A refit is a `refit_runs` row: queued (by a manager, by the label count, by the schedule), claimed with
`FOR UPDATE SKIP LOCKED` by whichever replica polls first, and executed under a session-level advisory lock
on the project (held on a dedicated connection, released if the replica dies), so only one replica fits a
project at a time. Nothing a replica keeps in memory is needed by another.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import multiprocessing
import os
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.aggregation import UNREACHABLE, TaskPosteriorModel
from services.consensus.aggregation import labels_needed as aggregation_labels_needed
from services.consensus.aggregation.em import e_step
from services.consensus.aggregation.matrix import AnswerMatrix, _sorted_classes
from services.consensus.db import rows_in_slices
from services.consensus.events import PRODUCER, publish_many
from services.consensus.labels.models import labels
from services.consensus.labels.service import TaskKey, project_gold, project_labels, project_reviews
from services.consensus.predictions.service import project_predictions
from services.consensus.projects.service import ProjectConfig, load_config
from services.consensus.quality import service as quality_service
from services.consensus.quality.annotators import AnnotatorQuality, annotator_quality
from services.consensus.refits.methods import METHODS
from services.consensus.refits.models import refit_runs, worker_models
from services.consensus.refits.store import save_model
from services.consensus.results import compute
from services.consensus.results.compute import FittedModel, Review, TaskResult
from services.consensus.results.models import consensus_results
from services.consensus.results.service import updated_envelopes, write_results
from shared.app import ServiceContext

log = logging.getLogger("quorum.consensus.refits")

REFIT_POLL_SECONDS = 1.0
# Label-count refits wait at least this long after the previous fit: under a steady stream of submissions a
# full refit every few hundred labels would spend the replica's CPU refitting instead of serving updates.
MIN_REFIT_GAP_SECONDS = 30
STALE_RUN_SECONDS = 900  # a run 'running' this long belonged to a replica that died
WRITE_CHUNK = 250
DIFF_SLICE = 2000  # tasks compared with their stored result between two yields to the event loop
# After a refit a task is re-announced when its label, status or labels_needed changed, or its confidence
# moved by more than this (smaller moves are refit noise nobody acts on).
CONFIDENCE_CHANGE = 1e-3


_fit_pool: ProcessPoolExecutor | None = None


def fit_pool() -> ProcessPoolExecutor:
    """One worker process for model fits. In a thread, a fit holds the GIL for tens of milliseconds at a time
    and every incremental update waiting on the event loop pays for it (it was the p99 of the update
    latency); in its own process it only competes for a core."""
    global _fit_pool
    if _fit_pool is None:
        _fit_pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _fit_pool


def _warm() -> int:
    import services.consensus.aggregation  # noqa: F401 - numpy/scipy and the methods, loaded once

    return os.getpid()


async def warm_fit_pool(ctx: ServiceContext | None = None) -> None:
    """Start the fit process at service startup: spawning it (an interpreter importing numpy and scipy, ~1 s
    of CPU) during the first refit would land in the middle of live traffic."""
    await asyncio.get_running_loop().run_in_executor(fit_pool(), _warm)


@atexit.register
def _shutdown_fit_pool() -> None:
    if _fit_pool is not None:
        _fit_pool.shutdown(wait=False, cancel_futures=True)


class RefitBusy(Exception):
    """Another replica holds the project's refit lock."""


async def request_refit(session: AsyncSession, project_id: uuid.UUID, *, reason: str,
                        requested_by: str | None = None) -> Any:
    """Queue a refit unless one is already queued for the project (then that one is returned)."""
    existing = (await session.execute(sa.select(refit_runs).where(
        refit_runs.c.project_id == project_id, refit_runs.c.status == "queued"))).first()
    if existing is not None:
        return existing
    run_id = uuid.uuid4()
    await session.execute(sa.insert(refit_runs).values(id=run_id, project_id=project_id, reason=reason,
                                                       status="queued", requested_by=requested_by))
    return (await session.execute(sa.select(refit_runs).where(refit_runs.c.id == run_id))).first()


async def get_run(session: AsyncSession, project_id: uuid.UUID, run_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(refit_runs).where(
        refit_runs.c.id == run_id, refit_runs.c.project_id == project_id))).first()


async def list_runs(session: AsyncSession, project_id: uuid.UUID, limit: int = 20) -> list[Any]:
    return list((await session.execute(sa.select(refit_runs).where(refit_runs.c.project_id == project_id)
                                        .order_by(refit_runs.c.requested_at.desc()).limit(limit))).all())


async def claim_next_run(session: AsyncSession) -> Any:
    r = refit_runs.c
    stale = sa.func.now() - sa.text(f"interval '{STALE_RUN_SECONDS} seconds'")
    candidate = (sa.select(r.id).where(sa.or_(r.status == "queued", sa.and_(r.status == "running",
                                                                             r.started_at < stale)))
                 .order_by(r.requested_at).limit(1).with_for_update(skip_locked=True).scalar_subquery())
    return (await session.execute(sa.update(refit_runs).where(r.id == candidate)
                                  .values(status="running", started_at=sa.func.now())
                                  .returning(*refit_runs.c))).first()


async def queue_due_refits(session: AsyncSession) -> int:
    """Queue refits for projects with enough new labels, or with new labels and an old (or no) model."""
    rows = (await session.execute(sa.text(f"""
        SELECT p.project_id, p.refit_after_labels, p.refit_interval_seconds,
               EXTRACT(EPOCH FROM now() - coalesce(m.last_fit, p.created_at)) AS age,
               m.last_fit IS NULL AS never_fitted,
               (SELECT count(*) FROM (SELECT 1 FROM {labels.schema}.labels AS l
                                      WHERE l.project_id = p.project_id AND l.id > coalesce(m.max_label_id, 0)
                                      LIMIT p.refit_after_labels) AS s) AS new_labels
        FROM {labels.schema}.projects AS p
        LEFT JOIN LATERAL (SELECT max(fitted_at) AS last_fit, max(max_label_id) AS max_label_id
                           FROM {labels.schema}.worker_models AS w WHERE w.project_id = p.project_id) AS m ON true
        WHERE NOT EXISTS (SELECT 1 FROM {labels.schema}.refit_runs AS r
                          WHERE r.project_id = p.project_id AND r.status IN ('queued', 'running'))"""))).all()
    queued = 0
    for row in rows:
        if row.new_labels >= row.refit_after_labels and (row.never_fitted or row.age >= MIN_REFIT_GAP_SECONDS):
            reason = "labels"
        elif row.new_labels > 0 and row.age >= row.refit_interval_seconds:
            reason = "schedule"
        else:
            continue
        await request_refit(session, row.project_id, reason=reason)
        queued += 1
    return queued


async def refit_loop(ctx: ServiceContext) -> None:
    """Background job of every replica: queue due refits, then execute queued ones."""
    while True:
        try:
            async with ctx.session_factory() as session, session.begin():
                await queue_due_refits(session)
            while True:
                async with ctx.session_factory() as session, session.begin():
                    run = await claim_next_run(session)
                if run is None:
                    break
                await execute_run(ctx, run)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refit loop failed; retrying")
        await asyncio.sleep(ctx.extras.get("refit_poll_seconds", REFIT_POLL_SECONDS))


async def execute_run(ctx: ServiceContext, run: Any) -> None:
    summary: dict[str, Any] = {}
    try:
        summary = await refit_project(ctx, run.project_id)
        status, error = "succeeded", None
    except RefitBusy:
        status, error = "queued", None  # another replica is fitting this project; try again later
    except Exception as exc:
        log.exception("refit of project %s failed", run.project_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
    async with ctx.session_factory() as session, session.begin():
        values: dict[str, Any] = {"status": status, "summary": summary, "error": error}
        if status != "queued":
            values["finished_at"] = sa.func.now()
        await session.execute(sa.update(refit_runs).where(refit_runs.c.id == run.id).values(**values))


def _lock_key(project_id: uuid.UUID) -> int:
    return int.from_bytes(uuid.UUID(str(project_id)).bytes[:8], "big", signed=True) ^ 0x51C0


async def refit_project(ctx: ServiceContext, project_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.engine.connect() as lock_conn:
        key = _lock_key(project_id)
        got = await lock_conn.scalar(sa.select(sa.func.pg_try_advisory_lock(key)))
        await lock_conn.commit()
        if not got:
            raise RefitBusy(str(project_id))
        try:
            return await _refit_locked(ctx, project_id)
        finally:
            await lock_conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            await lock_conn.commit()


@dataclass
class ControlFit:
    """A refit's outcome, sent back from the fit process. Task results travel as arrays (row i = `task_ids[i]`):
    48,000 result objects took 0.6 s to unpickle, all of it holding the service's GIL; arrays take milliseconds,
    and the service builds results slice by slice (`result`)."""

    control: str
    classes: list
    model: FittedModel
    worker_rows: list[dict[str, Any]]
    stats: dict[str, Any]
    quality: list[AnnotatorQuality]  # computed in the fit process, saved by the service
    confusion: dict[str, np.ndarray]
    skill: dict[str, float]
    method: str
    target_confidence: float
    max_labels: int
    task_ids: list[str]
    posterior: np.ndarray  # (tasks, classes)
    top: np.ndarray  # index of each task's consensus class
    n_labels: np.ndarray
    needed: np.ndarray
    max_label_ids: np.ndarray

    def result(self, i: int) -> tuple[TaskResult, int]:
        """Task `i`'s result and the highest label id it counts."""
        posterior, top = self.posterior[i], int(self.top[i])
        confidence = float(posterior[top])
        n, low = int(self.n_labels[i]), confidence < self.target_confidence
        status = "resolved" if not low else ("needs_more_labels" if n < self.max_labels else "insufficient")
        return TaskResult(label=self.classes[top], confidence=confidence,
                          posterior=[[c, float(p)] for c, p in zip(self.classes, posterior)], method=self.method,
                          n_labels=n, low_confidence=low, labels_needed=int(self.needed[i]) if low else 0,
                          status=status), int(self.max_label_ids[i])

    @property
    def task_results(self) -> dict[str, tuple[TaskResult, int]]:
        """Every task's `result`, by task id (tests; the service goes slice by slice)."""
        return {task: self.result(i) for i, task in enumerate(self.task_ids)}


async def _refit_locked(ctx: ServiceContext, project_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.session_factory() as session:
        config = await load_config(session, project_id)
    if config is None:
        return {"controls": {}, "note": "no labels received for this project"}
    summary: dict[str, Any] = {"method": config.method, "controls": {}}
    pause_inputs = []
    for control, cc in sorted(config.controls.items()):
        if compute.label_kind(cc.label_type) != compute.CATEGORICAL:
            continue
        async with ctx.session_factory() as session:
            data = await project_labels(session, project_id, control, with_times=False)
            gold = await project_gold(session, project_id, control)
            reviews = await project_reviews(session, project_id, control)
            predictions = await project_predictions(session, project_id, control) if data.tasks else {}
        if not data.tasks:
            continue
        fit = await asyncio.get_running_loop().run_in_executor(
            fit_pool(), fit_control, config, control, cc.classes, data, gold, reviews, predictions)
        async with ctx.session_factory() as session, session.begin():
            version = await save_model(
                session, project_id=project_id, control=control, method=config.method, classes=fit.classes,
                log_class_prior=fit.model.log_class_prior, default_log_confusion=fit.model.default_log_confusion,
                mean_accuracy=fit.model.mean_accuracy, max_label_id=data.max_label_id,
                n_labels=len(data.tasks), n_tasks=len(fit.task_ids), n_workers=len(fit.worker_rows),
                fit_seconds=fit.stats["fit_seconds"], stats=fit.stats, workers=fit.worker_rows)
        changed = await _write_changed(ctx, config, control, fit, version)
        async with ctx.session_factory() as session, session.begin():
            quality = await quality_service.save_snapshot(session, project_id, control, version, fit.quality,
                                                          confusion=fit.confusion, skill=fit.skill)
        pause_inputs.append(quality)
        summary["controls"][control] = {"model_version": version, **fit.stats, "changed_tasks": changed}
    if pause_inputs:
        async with ctx.session_factory() as session, session.begin():
            actions = await quality_service.apply_pause_decisions(
                session, config, pause_inputs, stream=ctx.stream)
        summary["annotator_actions"] = actions
    return summary


def fit_control(config: ProjectConfig, control: str, configured_classes: list | None, data: Any,
                gold: dict[str, Any], reviews: list[tuple[str, str, Any, Any]],
                predictions: dict[str, tuple[Any, float | None]] | None = None) -> ControlFit:
    """The CPU part of a refit (runs in the fit process): fit, parameters, every task's new result.

    `predictions`: task -> a model's (predicted value, score), every method's per-task prior (the one-coin
    vector of `compute.prediction_vector`, as the incremental update uses it); values outside the classes
    are ignored with a log."""
    started = time.perf_counter()
    values = [compute.categorical_value(v) for v in data.values]
    gold_values = {t: compute.categorical_value(v) for t, v in gold.items()}
    classes = _sorted_classes(dict.fromkeys([*(configured_classes or []), *values, *gold_values.values()]))
    class_index = {c: i for i, c in enumerate(classes)}
    priors: dict[str, np.ndarray] = {}
    for task, (value, score) in (predictions or {}).items():
        vector = compute.prediction_vector(class_index, _maybe(value), score, task=task)
        if vector is not None:
            priors[task] = vector
    matrix = AnswerMatrix.from_triples(tasks=data.tasks, workers=data.annotators, labels=values, classes=classes,
                                       gold=gold_values, predictions=priors, duplicates="last")
    method = config.method
    result = METHODS[method](matrix, prediction_weight=compute.PREDICTION_WEIGHT)
    k = len(classes)
    wq = result.workers
    confusion = np.asarray(wq.confusion, dtype=np.float64)
    # What the incremental update will use: the aggregation package's per-task model of this fit.
    tpm = TaskPosteriorModel.from_result(result)
    worker_ids = [str(w) for w in matrix.worker_ids.tolist()]
    if tpm.vote_mode:
        log_conf = np.log(np.clip(confusion, 1e-12, None))
        skill = np.array([tpm.evidence[j, 0, 0] for j in range(len(worker_ids))], dtype=np.float64)
        default_log_conf = np.log(np.clip(tpm.typical_confusion(), 1e-12, None))
        mean_weight = float(tpm.default_evidence[0, 0])
    else:
        log_conf = tpm.evidence.transpose(0, 2, 1)  # back to rows = truth
        skill = np.asarray(wq.skill, dtype=np.float64)
        default_log_conf = tpm.default_evidence.T
        mean_weight = 1.0
    weights = wq.n_labels.astype(np.float64)
    mean_accuracy = float((wq.accuracy * weights).sum() / max(weights.sum(), 1.0)) if len(weights) else 0.7
    log_prior = np.asarray(tpm.log_class_prior, dtype=np.float64)
    model = FittedModel(version=0, method=method, classes=classes, log_class_prior=log_prior,
                        default_log_confusion=default_log_conf,
                        mean_accuracy=mean_weight if method == "weighted_majority_vote" else mean_accuracy,
                        worker_log_confusion=dict(zip(worker_ids, log_conf)),
                        worker_skill=dict(zip(worker_ids, skill.tolist())))
    if tpm.tie_rank is not None and method == "majority_vote":
        # the project's first-seen class order, stored with the model so incremental updates break ties as this fit
        model.tie_order = [classes[i] for i in np.argsort(tpm.tie_rank, kind="stable").tolist()]
    fit_seconds = time.perf_counter() - started

    # Every task's posterior under the fitted parameters: the same formula the incremental update uses,
    # vectorised (one E-step), so the next submission on a task continues from exactly this result.
    if tpm.vote_mode:
        posterior = result.posterior
    else:
        posterior, _ = e_step(matrix, log_conf, log_prior, matrix.task_log_prior(compute.PREDICTION_WEIGHT))
    reviews_by_task: dict[str, list[Review]] = defaultdict(list)
    for task, verdict, value, corrected in reviews:
        reviews_by_task[task].append(Review(verdict, _maybe(value), _maybe(corrected)))
    answers_by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for t, a, v in zip(data.tasks, data.annotators, values):
        answers_by_task[t].append((a, v))
    max_id: dict[str, int] = {}
    for i, t in zip(data.ids, data.tasks):
        max_id[t] = max(max_id.get(t, 0), i)
    task_ids = [str(t) for t in matrix.task_ids.tolist()]
    n_per_task = matrix.labels_per_task
    posterior = np.array(posterior, dtype=np.float64, copy=True)
    for i, task in enumerate(task_ids):
        if task in reviews_by_task:
            posterior[i] = compute.categorical_posterior(method, classes, answers_by_task[task], model,
                                                         gold=gold_values.get(task), reviews=reviews_by_task[task],
                                                         prediction=priors.get(task))
    needed = _labels_needed_all(config, method, posterior, n_per_task, model)
    top = np.array([compute.leading_class(method, classes, row, model) for row in posterior], dtype=np.int64)
    consensus = {task: classes[top[i]] for i, task in enumerate(task_ids)}
    worker_rows = [{"annotator_id": w, "log_confusion": log_conf[j], "confusion": confusion[j],
                    "skill": float(skill[j]) if math.isfinite(skill[j]) else 0.0,
                    "accuracy": float(wq.accuracy[j]), "n_labels": int(wq.n_labels[j])}
                   for j, w in enumerate(worker_ids)]
    stats = {"method": method, "n_labels": int(matrix.n_answers), "n_tasks": matrix.n_tasks,
             "n_workers": matrix.n_workers, "n_classes": k, "fit_seconds": round(fit_seconds, 4),
             "n_iter": int(result.n_iter), "converged": bool(result.converged),
             "log_likelihood": float(result.log_likelihood) if math.isfinite(result.log_likelihood) else None}
    if model.tie_order is not None:
        stats["tie_order"] = compute.jsonable(model.tie_order)
    confusion_of = dict(zip(worker_ids, confusion))
    quality = annotator_quality(data.tasks, data.annotators, values, gold=gold_values, consensus=consensus,
                                confusion=confusion_of, class_prior=np.exp(log_prior - log_prior.max()),
                                classes=classes)
    return ControlFit(control=control, classes=classes, model=model, worker_rows=worker_rows, stats=stats,
                      quality=quality, confusion=confusion_of, skill=dict(zip(worker_ids, skill.tolist())),
                      method=method, target_confidence=config.target_confidence, max_labels=config.max_labels,
                      task_ids=task_ids, posterior=posterior, top=top,
                      n_labels=np.asarray(n_per_task, dtype=np.int64), needed=np.asarray(needed, dtype=np.int64),
                      max_label_ids=np.array([max_id.get(t, 0) for t in task_ids], dtype=np.int64))


def _maybe(value: Any) -> Any:
    try:
        return compute.categorical_value(value) if value is not None else None
    except compute.InvalidValue:
        return None


def _labels_needed_all(config: ProjectConfig, method: str, posterior: np.ndarray, n_labels: np.ndarray,
                       model: FittedModel) -> np.ndarray:
    room = np.maximum(config.max_labels - n_labels, 0)
    low = posterior.max(axis=1) < config.target_confidence
    needed = np.zeros(len(n_labels), dtype=np.int64)
    if method in compute.VOTING_METHODS:
        for i in np.flatnonzero(low):
            needed[i] = compute.labels_needed(method, posterior[i], config.target_confidence, int(n_labels[i]),
                                              config.max_labels, model)
        return needed
    rows = np.flatnonzero(low & (room > 0))
    if rows.size and posterior.shape[1] > 1:
        estimate = np.atleast_1d(aggregation_labels_needed(
            posterior[rows], config.target_confidence, np.exp(model.default_log_confusion),
            max_labels=config.max_labels))
        estimate = np.where(estimate == UNREACHABLE, room[rows], np.minimum(estimate, room[rows]))
        needed[rows] = estimate
    return needed


async def _write_changed(ctx: ServiceContext, config: ProjectConfig, control: str, fit: ControlFit,
                         version: int) -> int:
    async with ctx.session_factory() as session, session.begin():
        rows = await rows_in_slices(session, sa.select(
            consensus_results.c.task_id, consensus_results.c.label, consensus_results.c.confidence,
            consensus_results.c.status, consensus_results.c.labels_needed).where(
            consensus_results.c.project_id == config.project_id, consensus_results.c.control == control))
    current = {r.task_id: r for r in rows}
    items = []
    for start in range(0, len(fit.task_ids), DIFF_SLICE):
        for i in range(start, min(start + DIFF_SLICE, len(fit.task_ids))):
            task = fit.task_ids[i]
            result, max_id = fit.result(i)
            result.model_version = version
            cur = current.get(task)
            if (cur is None or cur.label != result.label or cur.status != result.status
                    or cur.labels_needed != result.labels_needed
                    or abs(cur.confidence - result.confidence) > CONFIDENCE_CHANGE):
                items.append((TaskKey(config.project_id, task, control), result, max_id))
        await asyncio.sleep(0)  # let submissions in between slices
    written = 0
    configs = {config.project_id: config}
    for start in range(0, len(items), WRITE_CHUNK):
        began = time.perf_counter()
        async with ctx.session_factory() as session, session.begin():
            done = await write_results(session, items[start:start + WRITE_CHUNK], "refit")
            await publish_many(session, updated_envelopes(configs, done), stream=ctx.stream)
            written += len(done)
        # Background work yields to the per-submit path: rest as long as the chunk took, so a large refit's
        # write-out (and the relay's burst of announcements) takes at most about half of the service.
        await asyncio.sleep(time.perf_counter() - began)
    return written


async def latest_fit_summary(session: AsyncSession, project_id: uuid.UUID) -> list[dict[str, Any]]:
    latest = (sa.select(worker_models.c.control, sa.func.max(worker_models.c.version).label("version"))
              .where(worker_models.c.project_id == project_id).group_by(worker_models.c.control).subquery())
    rows = (await session.execute(sa.select(worker_models).join(
        latest, sa.and_(worker_models.c.control == latest.c.control, worker_models.c.version == latest.c.version))
        .where(worker_models.c.project_id == project_id).order_by(worker_models.c.control))).all()
    return [{"control": r.control, "version": r.version, "method": r.method, "classes": r.classes,
             "n_labels": r.n_labels, "n_tasks": r.n_tasks, "n_workers": r.n_workers, "fit_seconds": r.fit_seconds,
             "fitted_at": r.fitted_at, "stats": r.stats} for r in rows]


__all__ = ["PRODUCER", "request_refit", "refit_loop", "refit_project", "fit_control"]
