"""Erasure records: that something was erased, by whom, how many keys died. Never what it contained."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class Erasure(Base):
    __tablename__ = "erasures"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    project_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    target_type: Mapped[str] = mapped_column(sa.String(20))  # task | dataset | subject | media
    target_ref: Mapped[str] = mapped_column(sa.String(200))
    requested_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    tasks_erased: Mapped[int] = mapped_column(sa.Integer, default=0)
    media_erased: Mapped[int] = mapped_column(sa.Integer, default=0)
    keys_destroyed: Mapped[int] = mapped_column(sa.Integer, default=0)
    blobs_deleted: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
