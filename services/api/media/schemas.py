"""Media request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MediaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    dataset_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    filename: str = Field(description="sanitised display name; never a storage path")
    content_type: str = Field(description="type detected from the content (magic bytes)")
    size_bytes: int
    source: str
    metadata_removed: list[str] = Field(default_factory=list, description="image metadata that was stripped")
    created_at: datetime | None = None
    duplicate: bool = Field(default=False, description="true: identical content already existed; this is it")
    url: str


class BatchItemOut(BaseModel):
    name: str
    media_id: str | None = None
    duplicate: bool = False
    content_type: str | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    created: int
    duplicates: int
    failed: int
    truncated: bool = Field(default=False, description="more objects matched than one call imports")
    items: list[BatchItemOut]


class BucketImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", max_length=1024)
    dataset_id: uuid.UUID | None = None
    max_objects: int | None = Field(default=None, ge=1)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int | None = Field(default=None, ge=1, description="default and maximum are configured")


class LinkOut(BaseModel):
    url: str
    expires_at: int = Field(description="Unix time after which the link stops working")
    ttl_seconds: int
