"""projects with versioned label schemas, data keys, encrypted tasks, pseudonym index, import operations

Revision ID: 0004_ingest
Revises: 0003_identity
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004_ingest"
down_revision = "0003_identity"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # -- projects: settings that are not versioned with the label schema ------------------------------
    op.add_column("projects", sa.Column("instructions", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("projects", sa.Column("overlap", sa.Integer, nullable=False, server_default="1"), schema=SCHEMA)
    op.add_column("projects", sa.Column("consensus", pg.JSONB, nullable=False, server_default="{}"), schema=SCHEMA)
    op.add_column("projects", sa.Column("pii", pg.JSONB, nullable=False, server_default="{}"), schema=SCHEMA)
    op.add_column("projects", sa.Column("allowed_vendor_ids", pg.JSONB, nullable=False, server_default="[]"),
                  schema=SCHEMA)
    op.add_column("projects", sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
                  schema=SCHEMA)
    op.add_column("projects", sa.Column("secret_sealed", sa.Text, nullable=True), schema=SCHEMA)
    op.add_column("projects", sa.Column("created_by", sa.String(64), nullable=True), schema=SCHEMA)
    op.add_column("projects", sa.Column("archived_at", TS, nullable=True), schema=SCHEMA)

    op.create_table(
        "label_schema_versions",
        sa.Column("project_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("label_schema", pg.JSONB, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )

    # -- data keys: wrapped DEKs; destroyed = wrapped key gone (crypto-shredding) -----------------------
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("kek_version", sa.Integer, nullable=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("destroyed_at", TS, nullable=True),
        sa.CheckConstraint("(destroyed_at IS NULL) = (wrapped IS NOT NULL AND kek_version IS NOT NULL)",
                           name="live_or_destroyed"),
        schema=SCHEMA,
    )
    op.create_index("ix_data_keys_scope", "data_keys", ["scope"], schema=SCHEMA)
    op.create_index("ix_data_keys_live_kek", "data_keys", ["kek_version"], schema=SCHEMA,
                    postgresql_where=sa.text("destroyed_at IS NULL"))

    # -- import operations ----------------------------------------------------------------------------
    op.create_table(
        "import_operations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("project_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("org_id", sa.Uuid, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("encoding", sa.String(20), nullable=False, server_default="utf-8"),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("spool_key", sa.String(300), nullable=True),
        sa.Column("bytes_received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("schema_version", sa.Integer, nullable=True),
        sa.Column("rows_seen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_committed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duplicate_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("invalid_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        schema=SCHEMA,
    )
    op.create_index("ix_import_operations_project", "import_operations", ["project_id", "created_at"],
                    schema=SCHEMA)
    op.create_index("uq_import_operations_idempotency", "import_operations", ["project_id", "idempotency_key"],
                    unique=True, schema=SCHEMA, postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.create_index("ix_import_operations_pending", "import_operations", ["lease_until"], schema=SCHEMA,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_table(
        "import_row_errors",
        sa.Column("operation_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.import_operations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("row_number", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.SmallInteger, primary_key=True),
        sa.Column("field", sa.String(300), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        schema=SCHEMA,
    )

    # -- tasks: data, report and (optional) original are ciphertext only ------------------------------
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("project_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("org_id", sa.Uuid, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("data_enc", sa.LargeBinary, nullable=False),
        sa.Column("original_key_id", sa.String(64), nullable=True),
        sa.Column("original_enc", sa.LargeBinary, nullable=True),
        sa.Column("pii_counts", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("has_predictions", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("import_id", sa.Uuid, nullable=True),
        sa.Column("row_number", sa.BigInteger, nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("erased_at", TS, nullable=True),
        schema=SCHEMA,
    )
    op.create_index("uq_tasks_project_content_hash", "tasks", ["project_id", "content_hash"], unique=True,
                    schema=SCHEMA)
    op.create_index("ix_tasks_project_created", "tasks", ["project_id", "created_at", "id"], schema=SCHEMA)
    op.create_index("ix_tasks_import", "tasks", ["import_id"], schema=SCHEMA)

    op.create_table(
        "task_pseudonyms",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("pseudonym", sa.String(100), primary_key=True),
        sa.Column("task_id", sa.Uuid, sa.ForeignKey(f"{SCHEMA}.tasks.id", ondelete="CASCADE"), primary_key=True),
        schema=SCHEMA,
    )
    op.create_index("ix_task_pseudonyms_task", "task_pseudonyms", ["task_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("task_pseudonyms", schema=SCHEMA)
    op.drop_table("tasks", schema=SCHEMA)
    op.drop_table("import_row_errors", schema=SCHEMA)
    op.drop_table("import_operations", schema=SCHEMA)
    op.drop_table("data_keys", schema=SCHEMA)
    op.drop_table("label_schema_versions", schema=SCHEMA)
    for column in ("archived_at", "created_by", "secret_sealed", "schema_version", "allowed_vendor_ids", "pii",
                   "consensus", "overlap", "instructions"):
        op.drop_column("projects", column, schema=SCHEMA)
