"""media and erasure

Revision ID: 0005_media
Revises: 0004_ingest
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_media"
down_revision = "0004_ingest"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Uuid, nullable=False, index=True),
        sa.Column("project_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("dataset_id", sa.Uuid, nullable=True, index=True),
        sa.Column("task_id", sa.Uuid, nullable=True, index=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("blob_key", sa.String(300), nullable=False, unique=True),
        sa.Column("data_key_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(1100), nullable=True),
        sa.Column("metadata_removed", sa.JSON, nullable=False, server_default="[]"),
        sa.Column("created_by", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("project_id", "content_hash", name="uq_media_project_content_hash"),
        schema=SCHEMA,
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Uuid, nullable=False, index=True),
        sa.Column("project_id", sa.Uuid, nullable=False, index=True),
        sa.Column("target_type", sa.String(20), nullable=False),
        sa.Column("target_ref", sa.String(200), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=True),
        sa.Column("tasks_erased", sa.Integer, nullable=False, server_default="0"),
        sa.Column("media_erased", sa.Integer, nullable=False, server_default="0"),
        sa.Column("keys_destroyed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("blobs_deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("erasures", schema=SCHEMA)
    op.drop_table("media", schema=SCHEMA)
