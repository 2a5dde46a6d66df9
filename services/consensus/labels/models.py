"""The per-task label store fed by events: labels (with superseded re-submissions), gold labels, reviews."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base

labels = sa.Table(
    "labels", Base.metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),  # monotone: "labels since the last fit"
    sa.Column("annotation_id", sa.String(64), nullable=False, unique=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("control", sa.String(100), nullable=False),
    sa.Column("annotator_id", sa.String(64), nullable=False),
    sa.Column("label_type", sa.String(40), nullable=False),
    sa.Column("value", JSONB, nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("superseded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_labels_task", "project_id", "task_id", "control", "annotator_id"),
    sa.Index("ix_labels_project_control", "project_id", "control", "id"),
)

gold_labels = sa.Table(
    "gold_labels", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("control", sa.String(100), primary_key=True),
    sa.Column("value", JSONB, nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

reviews = sa.Table(
    "reviews", Base.metadata,
    sa.Column("annotation_id", sa.String(64), primary_key=True),
    sa.Column("reviewer_id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("corrected_value", JSONB),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Index("ix_reviews_task", "project_id", "task_id"),
)
