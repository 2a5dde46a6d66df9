"""foundation: event outbox/inbox

Revision ID: 0001_foundation
Revises:
"""
from alembic import op

from shared.events.tables import create_event_tables, drop_event_tables

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    create_event_tables(op, SCHEMA)


def downgrade() -> None:
    drop_event_tables(op, SCHEMA)
