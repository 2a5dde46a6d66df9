"""Every event type and its payload schema, one place for producers and consumers alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SystemPing(Payload):
    message: str = "ping"


# The categorical aggregation methods a project may choose; the consensus service implements them ("default"
# is its default method, "wawa" an alias of weighted majority vote; "mean"/"median" are for numeric controls).
CONSENSUS_METHODS = ("default", "correlated_dawid_skene", "dawid_skene", "bayesian_dawid_skene",
                     "one_coin_dawid_skene", "glad", "mace", "majority_vote", "weighted_majority_vote", "wawa",
                     "mean", "median")
ConsensusMethod = Literal["default", "correlated_dawid_skene", "dawid_skene", "bayesian_dawid_skene",
                          "one_coin_dawid_skene", "glad", "mace", "majority_vote", "weighted_majority_vote", "wawa",
                          "mean", "median"]


class ControlSpec(Payload):
    label_type: str = Field(description="schema control type, e.g. single_choice, spans, bbox, number")
    classes: list[Any] | None = Field(default=None, description="allowed values of a choice control")


class ProjectConfigured(Payload):
    """What other services act on about a project, as of a schema version: sent by the api when a project is
    created and whenever its label schema, overlap or consensus settings change (the latest one wins)."""

    project_id: str
    schema_version: int
    overlap: int = 1
    consensus_method: ConsensusMethod = "default"
    target_confidence: float = 0.8
    max_labels: int = 5
    controls: dict[str, ControlSpec] = {}


class TaskCreated(Payload):
    task_id: str
    project_id: str
    dataset_id: str | None = None
    priority: int = 0
    overlap: int = 1
    is_gold: bool = False
    schema_version: int = 1


class TasksImported(Payload):
    """One event per committed chunk of a bulk import (up to a few thousand tasks), instead of one per task."""

    project_id: str
    dataset_id: str | None = None
    task_ids: list[str]
    priority: int = 0
    overlap: int = 1
    schema_version: int = 1


class PredictedChoice(Payload):
    task_id: str
    control: str = Field(description="name of the single_choice control the prediction answers")
    model_version: str | None = None
    value: Any = Field(description="the predicted option (one of the control's classes)")
    score: float | None = Field(default=None, ge=0.0, le=1.0,
                                description="the model's confidence in `value`; absent: consumers assume a default")


class PredictionsImported(Payload):
    """Model predictions (pre-labels) of single_choice controls for tasks just imported: one event per committed
    import chunk, next to its `tasks.imported`. Consumers use them as per-task priors (the latest per task and
    control wins)."""

    project_id: str
    dataset_id: str | None = None
    predictions: list[PredictedChoice]


class TaskDeleted(Payload):
    task_id: str
    project_id: str


class AnnotationSubmitted(Payload):
    annotation_id: str
    task_id: str
    project_id: str
    annotator_id: str
    vendor_id: str | None = None
    label_type: str = Field(description="schema control type, e.g. single_choice, multi_choice, spans, bbox, number, text")
    control: str = Field(default="label", description="name of the schema control the value answers")
    value: Any
    schema_version: int = 1
    is_gold_task: bool = False
    gold_value: Any | None = None
    lease_id: str | None = None
    duration_ms: int | None = None
    submitted_at: datetime
    classes: list[Any] | None = Field(default=None, description="the control's allowed values in this schema "
                                      "version (choice controls); consumers ignore labels outside them")


class ReviewSubmitted(Payload):
    task_id: str
    project_id: str
    annotation_id: str
    reviewer_id: str
    verdict: Literal["accepted", "rejected", "corrected"]
    corrected_value: Any | None = None


class GoldLabelSet(Payload):
    task_id: str
    project_id: str
    control: str = "label"
    value: Any


class ConsensusUpdated(Payload):
    task_id: str
    project_id: str
    control: str = "label"
    label: Any
    confidence: float
    method: str
    n_labels: int
    result_version: int
    low_confidence: bool
    labels_needed: int = 0
    status: Literal["resolved", "needs_more_labels", "insufficient"]
    source: Literal["incremental", "refit"] = "incremental"
    model_version: int | None = None


class AnnotatorQualityChanged(Payload):
    annotator_id: str
    project_id: str
    action: Literal["pause", "resume", "none"]
    flags: list[str] = []
    accuracy: float | None = None
    reason: str | None = None


class AuditRecorded(Payload):
    """An access or change that compliance must see. Never carries a secret."""

    actor_id: str | None = None
    actor_type: Literal["user", "worker_token", "service", "anonymous"] = "anonymous"
    token_id: str | None = None
    org_id: str | None = None
    resource_type: str
    resource_id: str | None = None
    action: str
    outcome: Literal["success", "failure", "denied"]
    reason: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any] = {}


EVENT_TYPES: dict[str, dict[int, type[Payload]]] = {
    "system.ping": {1: SystemPing},
    "project.configured": {1: ProjectConfigured},
    "task.created": {1: TaskCreated},
    "tasks.imported": {1: TasksImported},
    "predictions.imported": {1: PredictionsImported},
    "task.deleted": {1: TaskDeleted},
    "annotation.submitted": {1: AnnotationSubmitted},
    "review.submitted": {1: ReviewSubmitted},
    "gold.set": {1: GoldLabelSet},
    "consensus.updated": {1: ConsensusUpdated},
    "annotator.quality_changed": {1: AnnotatorQualityChanged},
    "audit.recorded": {1: AuditRecorded},
}


def payload_model(type: str, version: int) -> type[Payload]:
    try:
        return EVENT_TYPES[type][version]
    except KeyError:
        raise KeyError(f"unknown event type {type!r} version {version}") from None
