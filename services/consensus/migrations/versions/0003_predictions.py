"""consensus: model predictions per task and control (priors of the aggregation)

Revision ID: 0003_predictions
Revises: 0002_consensus
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_predictions"
down_revision = "0002_consensus"
branch_labels = None
depends_on = None

SCHEMA = "quorum_consensus"


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("control", sa.String(100), primary_key=True),
        sa.Column("model_version", sa.String(200)),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("predictions", schema=SCHEMA)
