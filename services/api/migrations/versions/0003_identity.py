"""identity: users, memberships, vendor grants, worker/refresh tokens, recovery codes, signing keys

Revision ID: 0003_identity
Revises: 0002_core
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0003_identity"
down_revision = "0002_core"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def _fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(f"{SCHEMA}.{table}.id", ondelete=ondelete)


def _ts(name: str, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=sa.func.now() if now else None)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Uuid, _fk("organizations"), nullable=False, index=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("roles", ARRAY(sa.String(40)), nullable=False, server_default="{}"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("totp_secret_sealed", sa.Text, nullable=True),
        sa.Column("totp_pending_sealed", sa.Text, nullable=True),
        _ts("totp_enabled_at"),
        sa.Column("totp_last_step", sa.BigInteger, nullable=True),
        _ts("created_at", nullable=False, now=True),
        schema=SCHEMA,
    )
    op.create_table(
        "project_memberships",
        sa.Column("project_id", sa.Uuid, _fk("projects"), primary_key=True),
        sa.Column("user_id", sa.Uuid, _fk("users"), primary_key=True, index=True),
        sa.Column("org_id", sa.Uuid, _fk("organizations"), nullable=False, index=True),
        sa.Column("role", sa.String(40), nullable=False),
        _ts("created_at", nullable=False, now=True),
        schema=SCHEMA,
    )
    op.create_table(
        "vendor_grants",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_org_id", sa.Uuid, _fk("organizations"), nullable=False, index=True),
        sa.Column("vendor_org_id", sa.Uuid, _fk("organizations"), nullable=False, index=True),
        sa.Column("roles", ARRAY(sa.String(40)), nullable=False),
        sa.Column("scopes", ARRAY(sa.String(60)), nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at"),
        _ts("revoked_at"),
        sa.Column("revoked_by", sa.Uuid, nullable=True),
        sa.CheckConstraint("owner_org_id <> vendor_org_id", name="not_self"),
        schema=SCHEMA,
    )
    op.create_table(
        "grant_projects",
        sa.Column("grant_id", sa.Uuid, _fk("vendor_grants"), primary_key=True),
        sa.Column("project_id", sa.Uuid, _fk("projects"), primary_key=True, index=True),
        schema=SCHEMA,
    )
    op.create_table(
        "worker_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("grant_id", sa.Uuid, _fk("vendor_grants"), nullable=False, index=True),
        sa.Column("vendor_org_id", sa.Uuid, _fk("organizations"), nullable=False, index=True),
        sa.Column("worker_id", sa.Uuid, _fk("users"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("project_ids", ARRAY(sa.Uuid), nullable=False),
        sa.Column("scopes", ARRAY(sa.String(60)), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        _ts("revoked_at"),
        schema=SCHEMA,
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("family_id", sa.Uuid, nullable=False, index=True),
        sa.Column("user_id", sa.Uuid, _fk("users"), nullable=False, index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        _ts("used_at"),
        _ts("revoked_at"),
        sa.Column("revoke_reason", sa.String(40), nullable=True),
        schema=SCHEMA,
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, _fk("users"), nullable=False, index=True),
        sa.Column("lookup", sa.String(8), nullable=False),
        sa.Column("code_hash", sa.Text, nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("used_at"),
        sa.UniqueConstraint("user_id", "lookup", name="uq_recovery_codes_user_lookup"),
        schema=SCHEMA,
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(10), nullable=False, server_default="ES256"),
        sa.Column("public_jwk", JSONB, nullable=False),
        sa.Column("private_key_sealed", sa.Text, nullable=True),
        sa.Column("status", sa.String(10), nullable=False, server_default="active"),
        _ts("created_at", nullable=False, now=True),
        _ts("retired_at"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("signing_keys", "recovery_codes", "refresh_tokens", "worker_tokens", "grant_projects",
                  "vendor_grants", "project_memberships", "users"):
        op.drop_table(table, schema=SCHEMA)
