"""Event handlers: annotation.submitted (batched), review.submitted, gold.set.

Each runs inside the consumer's transaction (which also records the event ids in the inbox), so the stored
labels, the new consensus versions and the outbox rows announcing them commit together or not at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.labels.models import gold_labels, labels, reviews
from services.consensus.predictions.models import predictions
from services.consensus.results.models import consensus_history, consensus_results
from services.consensus.labels.service import NewLabel, TaskKey, lock_tasks, set_gold, store_review
from services.consensus.projects.service import ProjectConfig, learn_from_event, load_configs, save_config
from services.consensus.results import batch, compute
from services.consensus.results.service import recompute_and_publish
from shared.events.catalog import AnnotationSubmitted, GoldLabelSet, ReviewSubmitted, TaskDeleted
from shared.events.envelope import Envelope

log = logging.getLogger("quorum.consensus.labels")


async def _configs_for(session: AsyncSession, project_ids: set[uuid.UUID]) -> dict[uuid.UUID, ProjectConfig]:
    configs = await load_configs(session, sorted(project_ids))
    for pid in project_ids:
        configs.setdefault(pid, ProjectConfig(project_id=pid))
    return configs


async def handle_annotations(session: AsyncSession, envelopes: Sequence[Envelope], *, stream: str) -> int:
    """Store a batch of submitted annotations and update the consensus of every task they touch.

    Labels whose type this service cannot aggregate, or whose value is outside the control's schema, are
    ignored with a log (the api rejects them upstream; one arriving here is a schema change in flight).
    Three statements whatever the batch size (`results.batch`); returns how many labels were new.
    """
    parsed: list[tuple[Envelope, AnnotationSubmitted]] = []
    for env in envelopes:
        try:
            parsed.append((env, AnnotationSubmitted.model_validate(env.payload)))
        except ValidationError as exc:
            log.warning("ignoring malformed annotation.submitted %s: %s", env.id, exc.errors()[:3])
    if not parsed:
        return 0
    # Every task named in the batch is locked, valid label or not: the config is needed to tell, and it comes
    # with the locks in one round trip.
    project_ids = {uuid.UUID(p.project_id) for _, p in parsed}
    configs = await batch.lock_and_load_configs(
        session, (TaskKey(uuid.UUID(p.project_id), p.task_id, p.control) for _, p in parsed), project_ids)
    dirty: dict[uuid.UUID, ProjectConfig] = {}
    new: list[NewLabel] = []
    for env, p in parsed:
        config = configs[uuid.UUID(p.project_id)]
        if learn_from_event(config, env.org_id, p.control, p.label_type, p.classes):
            dirty[config.project_id] = config
        control = config.controls[p.control]
        kind = compute.label_kind(p.label_type)
        if kind is None:
            log.warning("ignoring annotation %s: label type %r cannot be aggregated", p.annotation_id, p.label_type)
            continue
        if compute.label_kind(control.label_type) != kind:
            log.warning("ignoring annotation %s: control %r is %s, not %s", p.annotation_id, p.control,
                        control.label_type, p.label_type)
            continue
        try:
            compute.check_value(kind, p.value, control.classes)
        except compute.InvalidValue as exc:
            log.warning("ignoring annotation %s on task %s: %s", p.annotation_id, p.task_id, exc)
            continue
        new.append(NewLabel(annotation_id=p.annotation_id, key=TaskKey(config.project_id, p.task_id, p.control),
                            annotator_id=p.annotator_id, label_type=p.label_type, value=p.value,
                            submitted_at=p.submitted_at))
    for config in dirty.values():
        await save_config(session, config)
    if not new:
        return 0
    loaded = await batch.store_and_load_evidence(session, new)
    if loaded.fresh:
        items = batch.compute_results(configs, loaded.fresh, loaded.evidence, loaded.models)
        await batch.write_and_announce(session, items, configs, stream=stream, superseded=loaded.superseded)
    return loaded.n_new


async def handle_task_deleted(session: AsyncSession, env: Envelope) -> int:
    """An erased task leaves nothing here: its labels (free text may hold what the api erased), gold, reviews,
    model predictions and consensus history are deleted. Returns how many rows went."""
    p = TaskDeleted.model_validate(env.payload)
    project_id = uuid.UUID(p.project_id)
    controls = (await session.execute(
        sa.select(labels.c.control).where(labels.c.project_id == project_id, labels.c.task_id == p.task_id)
        .union(sa.select(consensus_results.c.control).where(consensus_results.c.project_id == project_id,
                                                            consensus_results.c.task_id == p.task_id)))).scalars()
    await lock_tasks(session, [TaskKey(project_id, p.task_id, c) for c in controls])
    removed = 0
    for table in (labels, gold_labels, reviews, predictions, consensus_results, consensus_history):
        result = await session.execute(sa.delete(table).where(table.c.project_id == project_id,
                                                              table.c.task_id == p.task_id))
        removed += result.rowcount or 0
    return removed


async def handle_review(session: AsyncSession, env: Envelope, *, stream: str) -> None:
    p = ReviewSubmitted.model_validate(env.payload)
    project_id = uuid.UUID(p.project_id)
    keys = await store_review(session, project_id=project_id, task_id=p.task_id, annotation_id=p.annotation_id,
                              reviewer_id=p.reviewer_id, verdict=p.verdict, corrected_value=p.corrected_value)
    if keys:
        configs = await _configs_for(session, {project_id})
        await lock_tasks(session, keys)
        await recompute_and_publish(session, keys, configs, stream=stream)


async def handle_gold(session: AsyncSession, env: Envelope, *, stream: str) -> None:
    p = GoldLabelSet.model_validate(env.payload)
    project_id = uuid.UUID(p.project_id)
    configs = await _configs_for(session, {project_id})
    config = configs[project_id]
    control = config.controls.get(p.control)
    kind = compute.label_kind(control.label_type) if control else None
    if kind is not None:
        try:
            compute.check_value(kind, p.value, control.classes)
        except compute.InvalidValue as exc:
            log.warning("ignoring gold label for task %s: %s", p.task_id, exc)
            return
    if env.org_id and config.org_id is None:
        config.org_id = uuid.UUID(env.org_id)
        await save_config(session, config)
    key = TaskKey(project_id, p.task_id, p.control)
    await lock_tasks(session, [key])
    await set_gold(session, key, p.value)
    if control is not None:
        await recompute_and_publish(session, [key], configs, stream=stream)
