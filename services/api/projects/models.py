"""Projects: the unit of labeling work, owned by one organisation; label schemas are versioned rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    instructions: Mapped[str] = mapped_column(sa.Text, default="")
    overlap: Mapped[int] = mapped_column(sa.Integer, default=1)
    consensus: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    pii: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    allowed_vendor_ids: Mapped[list[str]] = mapped_column(JSONB, default=list)
    schema_version: Mapped[int] = mapped_column(sa.Integer, default=1)
    # Per-project secret (sealed under the key ring): pseudonymisation HMAC key and content-hash key derive
    # from it, so pseudonyms and hashes are not linkable across projects nor computable without the key.
    secret_sealed: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now(),
                                                 onupdate=sa.func.now())


class LabelSchemaVersion(Base):
    __tablename__ = "label_schema_versions"

    project_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"),
                                                  primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    label_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
