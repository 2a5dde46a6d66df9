"""foundation: event outbox/inbox and received pings

Revision ID: 0001_foundation
Revises:
"""
from alembic import op

from shared.events.tables import create_event_tables, drop_event_tables
from shared.ping import create_ping_table

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "quorum_worker"


def upgrade() -> None:
    create_event_tables(op, SCHEMA)
    create_ping_table(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("received_pings", schema=SCHEMA)
    drop_event_tables(op, SCHEMA)
