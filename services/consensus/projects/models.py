"""Per-project consensus configuration, learned from events (label types, classes) or set by a manager."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base

projects = sa.Table(
    "projects", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("org_id", sa.Uuid),  # from the events' envelopes; decides who may read (404 for other orgs)
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("target_confidence", sa.Float, nullable=False),
    sa.Column("max_labels", sa.Integer, nullable=False),
    sa.Column("min_gold_accuracy", sa.Float),
    sa.Column("refit_after_labels", sa.Integer, nullable=False),
    sa.Column("refit_interval_seconds", sa.Integer, nullable=False),
    # {control: {"label_type": str, "classes": [..] | null, "classes_source": "event" | "manager" | null}}
    sa.Column("controls", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("settings_updated_by", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
