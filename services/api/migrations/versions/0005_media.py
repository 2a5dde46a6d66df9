"""media and erasure (placeholder: filled in by the media and erasure work)

Revision ID: 0005_media
Revises: 0004_ingest
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0005_media"
down_revision = "0004_ingest"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
