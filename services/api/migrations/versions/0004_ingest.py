"""projects and ingest (placeholder: filled in by the projects and ingest work)

Revision ID: 0004_ingest
Revises: 0003_identity
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0004_ingest"
down_revision = "0003_identity"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
