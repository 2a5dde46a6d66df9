"""consensus: project config, label store, results with history, worker models, refits, quality

Revision ID: 0002_consensus
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_consensus"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

SCHEMA = "quorum_consensus"
EMPTY_JSON = sa.text("'{}'::jsonb")


def _now() -> sa.Column:
    return sa.func.now()


def _result_columns() -> list[sa.Column]:
    return [
        sa.Column("label", JSONB),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("posterior", JSONB),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        sa.Column("low_confidence", sa.Boolean, nullable=False),
        sa.Column("labels_needed", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("max_label_id", sa.BigInteger, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Uuid),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("target_confidence", sa.Float, nullable=False),
        sa.Column("max_labels", sa.Integer, nullable=False),
        sa.Column("min_gold_accuracy", sa.Float),
        sa.Column("refit_after_labels", sa.Integer, nullable=False),
        sa.Column("refit_interval_seconds", sa.Integer, nullable=False),
        sa.Column("controls", JSONB, nullable=False, server_default=EMPTY_JSON),
        sa.Column("settings_updated_by", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("annotation_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.Uuid, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("control", sa.String(100), nullable=False),
        sa.Column("annotator_id", sa.String(64), nullable=False),
        sa.Column("label_type", sa.String(40), nullable=False),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("superseded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("annotation_id", name="uq_labels_annotation_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_labels_task", "labels", ["project_id", "task_id", "control", "annotator_id"], schema=SCHEMA)
    op.create_index("ix_labels_project_control", "labels", ["project_id", "control", "id"], schema=SCHEMA)
    op.create_table(
        "gold_labels",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("control", sa.String(100), primary_key=True),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "reviews",
        sa.Column("annotation_id", sa.String(64), primary_key=True),
        sa.Column("reviewer_id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.Uuid, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("corrected_value", JSONB),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_reviews_task", "reviews", ["project_id", "task_id"], schema=SCHEMA)
    op.create_table(
        "consensus_results",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("control", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        *_result_columns(),
        schema=SCHEMA,
    )
    op.create_index("ix_consensus_results_low", "consensus_results", ["project_id", "low_confidence", "task_id"],
                    schema=SCHEMA)
    op.create_table(
        "consensus_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("project_id", sa.Uuid, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("control", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        *_result_columns(),
        schema=SCHEMA,
    )
    op.create_index("ix_consensus_history_task", "consensus_history", ["project_id", "task_id", "control", "version"],
                    schema=SCHEMA)
    op.create_table(
        "worker_models",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("control", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("classes", JSONB, nullable=False),
        sa.Column("log_class_prior", JSONB, nullable=False),
        sa.Column("default_log_confusion", JSONB, nullable=False),
        sa.Column("mean_accuracy", sa.Float, nullable=False),
        sa.Column("max_label_id", sa.BigInteger, nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        sa.Column("n_tasks", sa.Integer, nullable=False),
        sa.Column("n_workers", sa.Integer, nullable=False),
        sa.Column("fit_seconds", sa.Float, nullable=False),
        sa.Column("stats", JSONB, nullable=False, server_default=EMPTY_JSON),
        sa.Column("fitted_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "worker_params",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("control", sa.String(100), primary_key=True),
        sa.Column("model_version", sa.Integer, primary_key=True),
        sa.Column("annotator_id", sa.String(64), primary_key=True),
        sa.Column("log_confusion", JSONB, nullable=False),
        sa.Column("confusion", JSONB, nullable=False),
        sa.Column("skill", sa.Float, nullable=False),
        sa.Column("accuracy", sa.Float, nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "refit_runs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("project_id", sa.Uuid, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(64)),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("summary", JSONB, nullable=False, server_default=EMPTY_JSON),
        sa.Column("error", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("ix_refit_runs_queue", "refit_runs", ["status", "requested_at"], schema=SCHEMA)
    op.create_index("ix_refit_runs_project", "refit_runs", ["project_id", "requested_at"], schema=SCHEMA)
    op.create_table(
        "quality_snapshots",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("project_id", sa.Uuid, nullable=False),
        sa.Column("control", sa.String(100), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("annotator_id", sa.String(64), nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        sa.Column("n_gold", sa.Integer, nullable=False),
        sa.Column("gold_accuracy", sa.Float),
        sa.Column("gold_accuracy_low", sa.Float),
        sa.Column("gold_accuracy_high", sa.Float),
        sa.Column("consensus_agreement", sa.Float),
        sa.Column("n_consensus", sa.Integer, nullable=False),
        sa.Column("model_accuracy", sa.Float),
        sa.Column("skill", sa.Float),
        sa.Column("spammer_score", sa.Float),
        sa.Column("flags", JSONB, nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("confusion", JSONB),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_quality_snapshots_model", "quality_snapshots",
                    ["project_id", "control", "model_version", "annotator_id"], schema=SCHEMA)
    op.create_table(
        "annotator_states",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("annotator_id", sa.String(64), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("annotator_states", "quality_snapshots", "refit_runs", "worker_params", "worker_models",
                  "consensus_history", "consensus_results", "reviews", "gold_labels", "labels", "projects"):
        op.drop_table(table, schema=SCHEMA)
