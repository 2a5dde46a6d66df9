"""identity (placeholder: filled in by the identity work)

Revision ID: 0003_identity
Revises: 0002_core
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0003_identity"
down_revision = "0002_core"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
