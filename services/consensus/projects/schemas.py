"""Request and response bodies of the consensus settings routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.consensus.refits.methods import METHODS, canonical_method, is_known_method
from services.consensus.results.compute import LABEL_KINDS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControlSettings(Strict):
    label_type: str = Field(description=f"one of {sorted(LABEL_KINDS)}")
    classes: list[str | int | bool] | None = Field(default=None, max_length=1000,
                                                   description="allowed values; labels outside are ignored")

    @field_validator("label_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value.lower() not in LABEL_KINDS:
            raise ValueError(f"unknown label type {value!r}; use one of {sorted(LABEL_KINDS)}")
        return value

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list | None) -> list | None:
        if value is not None and len(set(map(repr, value))) != len(value):
            raise ValueError("classes must be distinct")
        return value


class ConsensusSettingsIn(Strict):
    method: str = Field(description=f"aggregation method for choice controls: {sorted(METHODS)} (or 'default')")
    target_confidence: float = Field(ge=0.5, le=0.9999)
    max_labels: int = Field(ge=1, le=50)
    min_gold_accuracy: float | None = Field(default=None, ge=0.0, le=1.0,
                                            description="pause annotators confidently below this gold accuracy")
    refit_after_labels: int = Field(default=200, ge=1, le=10_000_000)
    refit_interval_seconds: int = Field(default=600, ge=10, le=30 * 86400)
    controls: dict[str, ControlSettings] | None = Field(
        default=None, description="label type and classes per control; omitted controls keep what events taught")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if not is_known_method(value):
            raise ValueError(f"unknown method {value!r}; use one of {sorted(METHODS)}")
        return canonical_method(value)


class ConsensusSettingsOut(BaseModel):
    project_id: str
    method: str
    target_confidence: float
    max_labels: int
    min_gold_accuracy: float | None
    refit_after_labels: int
    refit_interval_seconds: int
    controls: dict[str, Any]
    methods_available: list[str]
