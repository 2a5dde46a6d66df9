"""Project consensus configuration: defaults, what events teach (controls, label types, classes), manager edits."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.projects.models import projects
from services.consensus.projects.policy import ProjectRef
from services.consensus.refits.methods import DEFAULT_METHOD, canonical_method
from shared.events.catalog import ProjectConfigured

log = logging.getLogger("quorum.consensus.projects")

DEFAULT_TARGET_CONFIDENCE = 0.8
DEFAULT_MAX_LABELS = 5
DEFAULT_REFIT_AFTER_LABELS = 200
DEFAULT_REFIT_INTERVAL_SECONDS = 600


@dataclass
class ControlConfig:
    label_type: str
    classes: list | None = None
    classes_source: str | None = None  # "event" (from the schema in annotation.submitted) | "manager"


@dataclass
class ProjectConfig:
    project_id: uuid.UUID
    org_id: uuid.UUID | None = None
    method: str = DEFAULT_METHOD
    target_confidence: float = DEFAULT_TARGET_CONFIDENCE
    max_labels: int = DEFAULT_MAX_LABELS
    min_gold_accuracy: float | None = None
    refit_after_labels: int = DEFAULT_REFIT_AFTER_LABELS
    refit_interval_seconds: int = DEFAULT_REFIT_INTERVAL_SECONDS
    controls: dict[str, ControlConfig] = field(default_factory=dict)
    exists: bool = False

    @property
    def ref(self) -> ProjectRef:
        return ProjectRef(id=str(self.project_id), org_id=str(self.org_id) if self.org_id else None)

    def controls_json(self) -> dict[str, Any]:
        return {name: {"label_type": c.label_type, "classes": c.classes, "classes_source": c.classes_source}
                for name, c in self.controls.items()}

    @classmethod
    def from_row(cls, row: Any) -> ProjectConfig:
        controls = {name: ControlConfig(**c) for name, c in (row.controls or {}).items()}
        return cls(project_id=row.project_id, org_id=row.org_id, method=canonical_method(row.method),
                   target_confidence=row.target_confidence, max_labels=row.max_labels,
                   min_gold_accuracy=row.min_gold_accuracy, refit_after_labels=row.refit_after_labels,
                   refit_interval_seconds=row.refit_interval_seconds, controls=controls, exists=True)


async def load_configs(session: AsyncSession, project_ids: list[uuid.UUID]) -> dict[uuid.UUID, ProjectConfig]:
    rows = (await session.execute(sa.select(projects).where(projects.c.project_id.in_(project_ids)))).all()
    return {row.project_id: ProjectConfig.from_row(row) for row in rows}


async def load_config(session: AsyncSession, project_id: uuid.UUID) -> ProjectConfig | None:
    return (await load_configs(session, [project_id])).get(project_id)


async def save_config(session: AsyncSession, config: ProjectConfig, *, updated_by: str | None = None) -> None:
    values = dict(org_id=config.org_id, method=config.method, target_confidence=config.target_confidence,
                  max_labels=config.max_labels, min_gold_accuracy=config.min_gold_accuracy,
                  refit_after_labels=config.refit_after_labels,
                  refit_interval_seconds=config.refit_interval_seconds, controls=config.controls_json())
    if updated_by is not None:
        values["settings_updated_by"] = updated_by
    stmt = pg_insert(projects).values(project_id=config.project_id, **values)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[projects.c.project_id], set_={**values, "updated_at": sa.func.now()}))
    config.exists = True


def learn_from_event(config: ProjectConfig, org_id: str | None, control: str, label_type: str,
                     classes: list | None) -> bool:
    """Fold what an annotation event says about the project into its config; True if anything changed."""
    changed = not config.exists
    if org_id:
        event_org = uuid.UUID(org_id)
        if config.org_id is None:
            config.org_id, changed = event_org, True
        elif config.org_id != event_org:
            # The api is the authority on ownership: its events win over a manager's earlier claim.
            log.warning("project %s: organisation changed from %s to %s by an event", config.project_id,
                        config.org_id, event_org)
            config.org_id, changed = event_org, True
    current = config.controls.get(control)
    if current is None:
        config.controls[control] = ControlConfig(label_type=label_type, classes=classes,
                                                 classes_source="event" if classes is not None else None)
        return True
    if classes is not None and current.classes_source != "manager" and current.classes != classes:
        current.classes, current.classes_source, changed = list(classes), "event", True
    return changed


def apply_configuration(config: ProjectConfig, org_id: str | None, configured: ProjectConfigured) -> bool:
    """Fold the api's `project.configured` into the config; True if the aggregation method changed.

    The api is the authority on ownership, the schema's controls and the project's consensus settings. Classes a
    manager set through this service's settings stay until the schema names different ones."""
    if org_id:
        config.org_id = uuid.UUID(org_id)
    method = canonical_method(configured.consensus_method)
    method_changed = config.exists and config.method != method
    config.method = method
    config.target_confidence = configured.target_confidence
    config.max_labels = configured.max_labels
    for name, spec in configured.controls.items():
        current = config.controls.get(name)
        if current is not None and current.classes_source == "manager" and spec.classes is None:
            current.label_type = spec.label_type
            continue
        config.controls[name] = ControlConfig(label_type=spec.label_type, classes=spec.classes,
                                              classes_source="schema" if spec.classes is not None else None)
    return method_changed
