"""predictions.imported: store model predictions as task priors and update the consensus of labelled tasks.

Runs inside the consumer's transaction, like the label handlers: the stored predictions, the new consensus
versions and their announcements commit together or not at all.
"""

from __future__ import annotations

import logging
import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.labels.service import TaskKey, lock_tasks
from services.consensus.predictions.service import NewPrediction, store_predictions
from services.consensus.projects.service import ProjectConfig, load_configs
from services.consensus.results import compute
from services.consensus.results.service import recompute_and_publish
from shared.events.catalog import PredictionsImported
from shared.events.envelope import Envelope

log = logging.getLogger("quorum.consensus.predictions")


async def handle_predictions(session: AsyncSession, env: Envelope, *, stream: str) -> int:
    """Store the event's predictions and recompute the tasks among them that already have labels.

    A prediction that cannot be a label of its control (not one value, a control that is not a choice, a
    class outside the control's classes) is ignored with a log. Controls not known yet (no label and no
    schema received) are stored as they are: the consensus checks them against the classes when it uses them.
    Returns how many predictions were stored.
    """
    try:
        p = PredictionsImported.model_validate(env.payload)
    except ValidationError as exc:
        log.warning("ignoring malformed predictions.imported %s: %s", env.id, exc.errors()[:3])
        return 0
    project_id = uuid.UUID(p.project_id)
    config = (await load_configs(session, [project_id])).get(project_id) or ProjectConfig(project_id=project_id)
    latest: dict[TaskKey, NewPrediction] = {}
    for entry in p.predictions:
        control = config.controls.get(entry.control)
        try:
            value = compute.categorical_value(entry.value)
            if control is not None:
                if compute.label_kind(control.label_type) != compute.CATEGORICAL:
                    raise compute.InvalidValue(f"control {entry.control!r} is {control.label_type}, not a choice")
                if control.classes is not None and value not in control.classes:
                    raise compute.InvalidValue(f"{value!r} is not one of the control's classes")
        except compute.InvalidValue as exc:
            log.warning("ignoring prediction for task %s (%s): %s", entry.task_id, entry.control, exc)
            continue
        key = TaskKey(project_id, entry.task_id, entry.control)
        latest[key] = NewPrediction(key=key, value=value, score=entry.score, model_version=entry.model_version)
    if not latest:
        return 0
    # The tasks' locks before the write: an incremental update of one of them either sees the prediction or
    # commits before it is stored (and is then recomputed here).
    await lock_tasks(session, latest)
    labelled = await store_predictions(session, list(latest.values()))
    if labelled:
        await recompute_and_publish(session, labelled, {project_id: config}, stream=stream)
    return len(latest)
