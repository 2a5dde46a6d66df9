"""Media objects: the row that names an encrypted blob, its plaintext type/size/hash and its data key."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class Media(Base):
    __tablename__ = "media"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "content_hash", name="uq_media_project_content_hash"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    project_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True, nullable=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True, nullable=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    content_hash: Mapped[str] = mapped_column(sa.String(64))  # keyed (project secret) HMAC of the stored plaintext
    blob_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    data_key_id: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(20))  # upload | archive | bucket
    source_ref: Mapped[str | None] = mapped_column(sa.String(1100), nullable=True)
    metadata_removed: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())

