"""Tasks: data, redaction report and predictions are one AES-256-GCM ciphertext under the task's data key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (sa.Index("uq_tasks_project_content_hash", "project_id", "content_hash", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    # References projects.id through statement-level triggers, not a per-row foreign key (migration 0006).
    project_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    schema_version: Mapped[int] = mapped_column(sa.Integer)
    content_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str] = mapped_column(sa.String(64))
    data_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    original_key_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    original_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    pii_counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    has_predictions: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    import_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, nullable=True)
    row_number: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    erased_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class TaskPseudonym(Base):
    """Which tasks mention a pseudonymised value: a data subject's records found by pseudonym for erasure."""

    __tablename__ = "task_pseudonyms"

    project_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
