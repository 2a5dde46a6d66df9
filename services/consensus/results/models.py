"""Consensus results: the current one per (task, control) and every earlier version."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base


def _result_columns() -> list[sa.Column]:
    return [
        sa.Column("label", JSONB),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("posterior", JSONB),  # categorical: [[class, p], ...]; other types: method details
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        sa.Column("low_confidence", sa.Boolean, nullable=False),
        sa.Column("labels_needed", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("source", sa.String(20), nullable=False),  # incremental | refit
        sa.Column("max_label_id", sa.BigInteger, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


consensus_results = sa.Table(
    "consensus_results", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("control", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    *_result_columns(),
    sa.Index("ix_consensus_results_low", "project_id", "task_id", "control",
             postgresql_where=sa.text("low_confidence")),
)

consensus_history = sa.Table(
    "consensus_history", Base.metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("control", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    *_result_columns(),
    sa.Index("ix_consensus_history_task", "project_id", "task_id", "control", "version"),
)
