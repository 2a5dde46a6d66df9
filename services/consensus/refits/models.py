"""Fitted worker models (versioned per project and control), their per-annotator parameters, refit runs."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base

worker_models = sa.Table(
    "worker_models", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("control", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("classes", JSONB, nullable=False),
    sa.Column("log_class_prior", JSONB, nullable=False),  # (K,)
    sa.Column("default_log_confusion", JSONB, nullable=False),  # (K, K) for annotators the fit has not seen
    sa.Column("mean_accuracy", sa.Float, nullable=False),
    sa.Column("max_label_id", sa.BigInteger, nullable=False),  # labels with a larger id are "new since the fit"
    sa.Column("n_labels", sa.Integer, nullable=False),
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("n_workers", sa.Integer, nullable=False),
    sa.Column("fit_seconds", sa.Float, nullable=False),
    sa.Column("stats", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("fitted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

worker_params = sa.Table(
    "worker_params", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("control", sa.String(100), primary_key=True),
    sa.Column("model_version", sa.Integer, primary_key=True),
    sa.Column("annotator_id", sa.String(64), primary_key=True),
    sa.Column("log_confusion", JSONB, nullable=False),  # (K, K) rows = truth: what the incremental update uses
    sa.Column("confusion", JSONB, nullable=False),  # (K, K) P(label | truth)
    sa.Column("skill", sa.Float, nullable=False),
    sa.Column("accuracy", sa.Float, nullable=False),
    sa.Column("n_labels", sa.Integer, nullable=False),
)

refit_runs = sa.Table(
    "refit_runs", Base.metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),  # manual | labels | schedule
    sa.Column("status", sa.String(20), nullable=False),  # queued | running | succeeded | failed | skipped
    sa.Column("requested_by", sa.String(64)),
    sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("error", sa.Text),
    sa.Index("ix_refit_runs_queue", "status", "requested_at"),
    sa.Index("ix_refit_runs_project", "project_id", "requested_at"),
)
