"""Model predictions (pre-labels) per task and control: the latest one received is the task's prior."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.consensus.db import Base

predictions = sa.Table(
    "predictions", Base.metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("control", sa.String(100), primary_key=True),
    sa.Column("model_version", sa.String(200)),
    sa.Column("value", JSONB, nullable=False),  # the predicted class
    sa.Column("score", sa.Float),  # the model's confidence in it; NULL: compute.DEFAULT_PREDICTION_SCORE
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
