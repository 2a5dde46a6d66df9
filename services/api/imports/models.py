"""Bulk import operations: durable state in PG so any replica can resume one whose owner died."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class ImportOperation(Base):
    __tablename__ = "import_operations"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(20))  # queued | running | succeeded | failed
    format: Mapped[str] = mapped_column(sa.String(20))
    encoding: Mapped[str] = mapped_column(sa.String(20), default="utf-8")
    filename: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    spool_key: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    bytes_received: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bytes_processed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    schema_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    rows_seen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rows_committed: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # resume point (rows 1..n done)
    created_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    duplicate_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    invalid_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class ImportRowError(Base):
    __tablename__ = "import_row_errors"

    operation_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("import_operations.id", ondelete="CASCADE"),
                                                    primary_key=True)
    row_number: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    field: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    message: Mapped[str] = mapped_column(sa.Text)
