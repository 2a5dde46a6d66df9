"""core tenancy: organizations and projects

Revision ID: 0002_core
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_core"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False, server_default="data_owner"),
        sa.Column("require_totp", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.organizations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("projects", schema=SCHEMA)
    op.drop_table("organizations", schema=SCHEMA)
