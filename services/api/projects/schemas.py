"""Project settings and the versioned label schema (a discriminated union of control types)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events.catalog import ConsensusMethod
from shared.pii import Action, EntityType
from shared.validation import NulFreeModel

NAME = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
_NAME_RE = re.compile(NAME)


class Strict(NulFreeModel):
    model_config = ConfigDict(extra="forbid")


# -- data fields: what a task's `data` object carries ----------------------------------------------

class DataField(Strict):
    name: str = Field(pattern=NAME)
    type: Literal["text", "image", "audio", "video", "document", "url", "number", "json"] = "text"
    required: bool = True
    redact: bool = Field(default=True, description="run PII redaction over this field (text-like fields)")


# -- controls: what annotators answer ----------------------------------------------------------------

class ControlBase(Strict):
    name: str = Field(pattern=NAME, description="unique within the schema; annotations and predictions name it")
    source: str = Field(pattern=NAME, description="the data field this control annotates")
    required: bool = True
    description: str = Field(default="", max_length=2000)

    @field_validator("options", "labels", check_fields=False)
    @classmethod
    def _unique_values(cls, values: list[str], info: Any) -> list[str]:
        return _unique(values, info.field_name)


def _unique(values: list[str], what: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique")
    if any(not v or len(v) > 200 for v in values):
        raise ValueError(f"each of {what} must be 1..200 characters")
    return values


class SingleChoice(ControlBase):
    type: Literal["single_choice"]
    options: list[str] = Field(min_length=2, max_length=1000)


class MultiChoice(ControlBase):
    type: Literal["multi_choice"]
    options: list[str] = Field(min_length=1, max_length=1000)
    min_selected: int = Field(default=0, ge=0)
    max_selected: int | None = Field(default=None, ge=1)


class Spans(ControlBase):
    """Named-entity spans over a text field: [start, end) character offsets with one label each."""

    type: Literal["spans"]
    labels: list[str] = Field(min_length=1, max_length=500)
    allow_overlap: bool = False


class BBox(ControlBase):
    type: Literal["bbox"]
    labels: list[str] = Field(min_length=1, max_length=500)


class Polygon(ControlBase):
    type: Literal["polygon"]
    labels: list[str] = Field(min_length=1, max_length=500)
    min_points: int = Field(default=3, ge=3)
    max_points: int = Field(default=500, ge=3, le=10_000)


class TimeSegments(ControlBase):
    type: Literal["time_segments"]
    labels: list[str] = Field(min_length=1, max_length=500)


class TextAnswer(ControlBase):
    """Free text, e.g. a transcription."""

    type: Literal["text"]
    max_length: int = Field(default=10_000, ge=1, le=1_000_000)


class NumberAnswer(ControlBase):
    """A number or rating between min and max in steps of `step`."""

    type: Literal["number", "rating"]
    min: float = 0
    max: float = 5
    step: float = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _range(self) -> NumberAnswer:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        if self.step > self.max - self.min:
            raise ValueError("step must not exceed max - min")
        return self


Control = Annotated[
    SingleChoice | MultiChoice | Spans | BBox | Polygon | TimeSegments | TextAnswer | NumberAnswer,
    Field(discriminator="type"),
]

# Which data field types a control can annotate.
CONTROL_SOURCES: dict[str, set[str]] = {
    "single_choice": {"text", "image", "audio", "video", "document", "url", "number", "json"},
    "multi_choice": {"text", "image", "audio", "video", "document", "url", "number", "json"},
    "spans": {"text"},
    "bbox": {"image", "video"},
    "polygon": {"image", "video"},
    "time_segments": {"audio", "video"},
    "text": {"text", "image", "audio", "video", "document", "url"},
    "number": {"text", "image", "audio", "video", "document", "url", "number", "json"},
    "rating": {"text", "image", "audio", "video", "document", "url", "number", "json"},
}


class LabelSchema(Strict):
    data: list[DataField] = Field(min_length=1, max_length=100)
    controls: list[Control] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _references(self) -> LabelSchema:
        fields = {f.name: f for f in self.data}
        if len(fields) != len(self.data):
            raise ValueError("data field names must be unique")
        names = [c.name for c in self.controls]
        if len(set(names)) != len(names):
            raise ValueError("control names must be unique")
        for control in self.controls:
            source = fields.get(control.source)
            if source is None:
                raise ValueError(f"control {control.name!r} annotates unknown data field {control.source!r}")
            if source.type not in CONTROL_SOURCES[control.type]:
                raise ValueError(f"control {control.name!r} ({control.type}) cannot annotate "
                                 f"{source.type} field {control.source!r}")
        return self

    def control(self, name: str) -> Any:
        for c in self.controls:
            if c.name == name:
                return c
        return None


# -- other project settings --------------------------------------------------------------------------

class ConsensusSettings(Strict):
    method: ConsensusMethod = Field(default="default", description="aggregation method of the consensus service; "
                                    "'default' is its strongest general-purpose one (correlated Dawid-Skene)")
    target_confidence: float = Field(default=0.8, ge=0.5, le=1.0)
    max_labels: int = Field(default=5, ge=1, le=50)


class PiiSettings(Strict):
    enabled: bool = True
    default: Action = Action.MASK
    entities: dict[EntityType, Action] = Field(default_factory=dict)
    keep_original: bool = Field(default=False, description="keep the unredacted original, sealed for org admins")


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    instructions: str = Field(default="", max_length=200_000)
    label_schema: LabelSchema
    overlap: int = Field(default=1, ge=1, le=50)
    consensus: ConsensusSettings = Field(default_factory=ConsensusSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)
    allowed_vendor_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _overlap_fits(self) -> ProjectCreate:
        if self.consensus.max_labels < self.overlap:
            raise ValueError("consensus.max_labels must be at least overlap")
        return self


class ProjectUpdate(Strict):
    """PATCH: only what is given changes. A new `label_schema` creates a new schema version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    instructions: str | None = Field(default=None, max_length=200_000)
    label_schema: LabelSchema | None = None
    overlap: int | None = Field(default=None, ge=1, le=50)
    consensus: ConsensusSettings | None = None
    pii: PiiSettings | None = None
    allowed_vendor_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)


class ProjectOut(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    description: str
    instructions: str
    schema_version: int
    label_schema: LabelSchema
    overlap: int
    consensus: ConsensusSettings
    pii: PiiSettings
    allowed_vendor_ids: list[uuid.UUID]
    created_at: datetime
    updated_at: datetime


class SchemaVersionOut(BaseModel):
    version: int
    label_schema: LabelSchema
    created_by: str | None
    created_at: datetime


class ProjectList(BaseModel):
    items: list[ProjectOut]
    next_cursor: str | None = None
