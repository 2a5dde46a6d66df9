"""consensus: the low-confidence index holds only low-confidence results

Revision ID: 0004_low_confidence_index
Revises: 0003_predictions

The old index (project_id, low_confidence, task_id) also matched a lookup by (project_id, task_id) — skipping
its middle column, so walking every result of the project. A planner without statistics (a young table, or a
server with autovacuum off) could pick it for the per-submit read of a task's current result and keep that
plan cached: each submit then cost time proportional to the project's size
(`benchmarks/consensus_latency.py --seconds 120`). Partial, it serves only "which tasks need more labels".
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_low_confidence_index"
down_revision = "0003_predictions"
branch_labels = None
depends_on = None

SCHEMA = "quorum_consensus"


def upgrade() -> None:
    op.drop_index("ix_consensus_results_low", "consensus_results", schema=SCHEMA)
    op.create_index("ix_consensus_results_low", "consensus_results", ["project_id", "task_id", "control"],
                    schema=SCHEMA, postgresql_where=sa.text("low_confidence"))


def downgrade() -> None:
    op.drop_index("ix_consensus_results_low", "consensus_results", schema=SCHEMA)
    op.create_index("ix_consensus_results_low", "consensus_results", ["project_id", "low_confidence", "task_id"],
                    schema=SCHEMA)
