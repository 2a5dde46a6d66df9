"""Annotator quality snapshots after each refit, the pause/resume decisions, and the quality table reads."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.events import PRODUCER, publish_many
from services.consensus.projects.service import ProjectConfig
from services.consensus.quality.annotators import AnnotatorQuality, pause_decisions
from services.consensus.quality.models import annotator_states, quality_snapshots
from services.consensus.refits.models import worker_models
from shared.events.catalog import AnnotatorQualityChanged
from shared.events.envelope import new_event

log = logging.getLogger("quorum.consensus.quality")


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class ControlQuality:
    control: str
    rows: list[AnnotatorQuality]


async def save_snapshot(session: AsyncSession, project_id: uuid.UUID, control: str, model_version: int,
                        rows: list[AnnotatorQuality], *, confusion: dict[str, np.ndarray],
                        skill: dict[str, float]) -> ControlQuality:
    """Store a refit's annotator quality table (`annotator_quality`, computed in the fit process)."""
    if rows:
        await session.execute(sa.insert(quality_snapshots), [{
            "project_id": project_id, "control": control, "model_version": model_version,
            "annotator_id": str(q.annotator), "n_labels": q.n_labels, "n_gold": q.n_gold,
            "gold_accuracy": _num(q.gold_accuracy), "gold_accuracy_low": _num(q.gold_accuracy_low),
            "gold_accuracy_high": _num(q.gold_accuracy_high), "consensus_agreement": _num(q.consensus_agreement),
            "n_consensus": q.n_consensus, "model_accuracy": _num(q.model_accuracy),
            "skill": _num(skill.get(str(q.annotator))), "spammer_score": _num(q.spammer_score),
            "flags": [f for f, on in (("spammer", q.spammer), ("adversarial", q.adversarial)) if on],
            "reasons": list(q.reasons),
            "confusion": np.asarray(confusion[str(q.annotator)]).tolist() if str(q.annotator) in confusion else None,
        } for q in rows])
    return ControlQuality(control=control, rows=rows)


async def apply_pause_decisions(session: AsyncSession, config: ProjectConfig, controls: list[ControlQuality], *,
                                stream: str) -> dict[str, list[str]]:
    """Pause annotators `pause_decisions` names (in any control), resume paused ones it no longer names; announce
    each change as annotator.quality_changed for the distribution service."""
    decisions: dict[str, Any] = {}
    quality_of: dict[str, AnnotatorQuality] = {}
    for cq in controls:
        for q in cq.rows:
            quality_of.setdefault(str(q.annotator), q)
        for d in pause_decisions(cq.rows, min_gold_accuracy=config.min_gold_accuracy):
            decisions.setdefault(str(d.annotator), d)
    current = {r.annotator_id: r.paused for r in (await session.execute(sa.select(annotator_states).where(
        annotator_states.c.project_id == config.project_id))).all()}
    events, paused, resumed = [], [], []
    for annotator, q in sorted(quality_of.items()):
        decision = decisions.get(annotator)
        was_paused = current.get(annotator, False)
        if decision is not None and not was_paused:
            action, reason = "pause", f"{decision.reason}: {decision.detail}"
            paused.append(annotator)
        elif decision is None and was_paused:
            action, reason = "resume", "no longer flagged after the latest refit"
            resumed.append(annotator)
        else:
            continue
        stmt = pg_insert(annotator_states).values(project_id=config.project_id, annotator_id=annotator,
                                                  paused=action == "pause", reason=reason)
        await session.execute(stmt.on_conflict_do_update(
            index_elements=[annotator_states.c.project_id, annotator_states.c.annotator_id],
            set_={"paused": stmt.excluded.paused, "reason": stmt.excluded.reason, "changed_at": sa.func.now()}))
        flags = [f for f, on in (("spammer", q.spammer), ("adversarial", q.adversarial)) if on]
        accuracy = _num(q.gold_accuracy) if q.n_gold else _num(q.model_accuracy)
        payload = AnnotatorQualityChanged(annotator_id=annotator, project_id=str(config.project_id),
                                          action=action, flags=flags, accuracy=accuracy, reason=reason[:1000])
        events.append(new_event("annotator.quality_changed", payload, producer=PRODUCER,
                                project_id=str(config.project_id),
                                org_id=str(config.org_id) if config.org_id else None))
    await publish_many(session, events, stream=stream)
    return {"paused": paused, "resumed": resumed}


async def _latest_version(session: AsyncSession, project_id: uuid.UUID, control: str) -> int | None:
    return (await session.execute(sa.select(sa.func.max(quality_snapshots.c.model_version)).where(
        quality_snapshots.c.project_id == project_id, quality_snapshots.c.control == control))).scalar()


async def quality_table(session: AsyncSession, project_id: uuid.UUID, control: str) -> dict[str, Any]:
    version = await _latest_version(session, project_id, control)
    if version is None:
        return {"control": control, "model_version": None, "annotators": []}
    rows = (await session.execute(sa.select(quality_snapshots).where(
        quality_snapshots.c.project_id == project_id, quality_snapshots.c.control == control,
        quality_snapshots.c.model_version == version).order_by(quality_snapshots.c.annotator_id))).all()
    states = {r.annotator_id: r for r in (await session.execute(sa.select(annotator_states).where(
        annotator_states.c.project_id == project_id))).all()}
    classes = (await session.execute(sa.select(worker_models.c.classes).where(
        worker_models.c.project_id == project_id, worker_models.c.control == control,
        worker_models.c.version == version))).scalar()
    return {"control": control, "model_version": version, "classes": classes,
            "computed_at": rows[0].computed_at if rows else None,
            "annotators": [_row_out(r, states.get(r.annotator_id)) for r in rows]}


def _row_out(r: Any, state: Any) -> dict[str, Any]:
    return {"annotator_id": r.annotator_id, "n_labels": r.n_labels,
            "gold": {"n": r.n_gold, "accuracy": r.gold_accuracy,
                     "interval_95": [r.gold_accuracy_low, r.gold_accuracy_high] if r.n_gold else None},
            "consensus_agreement": r.consensus_agreement, "n_consensus": r.n_consensus,
            "model_accuracy": r.model_accuracy, "skill": r.skill, "spammer_score": r.spammer_score,
            "flags": r.flags, "reasons": r.reasons, "paused": bool(state.paused) if state else False,
            "confusion": r.confusion}


async def annotator_confusion(session: AsyncSession, project_id: uuid.UUID, control: str,
                              annotator_id: str) -> tuple[list, list] | None:
    """(classes, confusion matrix rows = truth) from the latest snapshot, or None."""
    version = await _latest_version(session, project_id, control)
    if version is None:
        return None
    row = (await session.execute(sa.select(quality_snapshots.c.confusion).where(
        quality_snapshots.c.project_id == project_id, quality_snapshots.c.control == control,
        quality_snapshots.c.model_version == version, quality_snapshots.c.annotator_id == annotator_id))).first()
    classes = (await session.execute(sa.select(worker_models.c.classes).where(
        worker_models.c.project_id == project_id, worker_models.c.control == control,
        worker_models.c.version == version))).scalar()
    if row is None or row.confusion is None or classes is None:
        return None
    return classes, row.confusion
