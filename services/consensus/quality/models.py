"""Annotator quality snapshots (one set per refit) and each annotator's current pause state."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base

quality_snapshots = sa.Table(
    "quality_snapshots", Base.metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("control", sa.String(100), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("annotator_id", sa.String(64), nullable=False),
    sa.Column("n_labels", sa.Integer, nullable=False),
    sa.Column("n_gold", sa.Integer, nullable=False),
    sa.Column("gold_accuracy", sa.Float),
    sa.Column("gold_accuracy_low", sa.Float),
    sa.Column("gold_accuracy_high", sa.Float),
    sa.Column("consensus_agreement", sa.Float),
    sa.Column("n_consensus", sa.Integer, nullable=False),
    sa.Column("model_accuracy", sa.Float),
    sa.Column("skill", sa.Float),
    sa.Column("spammer_score", sa.Float),
    sa.Column("flags", JSONB, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("confusion", JSONB),  # (K, K) rows = truth, from the fitted model
    sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Index("ix_quality_snapshots_model", "project_id", "control", "model_version", "annotator_id"),
)

annotator_states = sa.Table(
    "annotator_states", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("annotator_id", sa.String(64), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
