"""Identity tables: organisations, users, memberships, vendor grants, tokens, signing keys.

Everything is scoped by organisation; secrets are never stored in the clear: passwords and recovery codes
as argon2id hashes, refresh and worker tokens as SHA-256 of high-entropy values, TOTP seeds and signing keys
sealed under the key ring.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


def _now_column() -> Mapped[datetime]:
    return mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default="data_owner")  # data_owner | vendor
    require_totp: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # None: cannot log in (token-only worker)
    roles: Mapped[list[str]] = mapped_column(ARRAY(sa.String(40)), default=list)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    token_version: Mapped[int] = mapped_column(sa.Integer, default=0)
    totp_secret_sealed: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    totp_pending_sealed: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now_column()

    @property
    def totp_active(self) -> bool:
        return self.totp_enabled_at is not None and self.totp_secret_sealed is not None


class ProjectMembership(Base):
    __tablename__ = "project_memberships"

    project_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                                               index=True)
    org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = _now_column()


class VendorGrant(Base):
    __tablename__ = "vendor_grants"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    owner_org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    vendor_org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"),
                                                     index=True)
    roles: Mapped[list[str]] = mapped_column(ARRAY(sa.String(40)))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(sa.String(60)))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, nullable=True)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, nullable=True)


class GrantProject(Base):
    __tablename__ = "grant_projects"

    grant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vendor_grants.id", ondelete="CASCADE"),
                                                primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True,
                                                  index=True)


class WorkerToken(Base):
    __tablename__ = "worker_tokens"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)  # the JWT's jti
    grant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vendor_grants.id", ondelete="CASCADE"), index=True)
    vendor_org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"),
                                                     index=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    project_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(sa.Uuid))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(sa.String(60)))
    role: Mapped[str] = mapped_column(sa.String(40))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, nullable=True)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    __table_args__ = (sa.UniqueConstraint("user_id", "lookup", name="uq_recovery_codes_user_lookup"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lookup: Mapped[str] = mapped_column(sa.String(8))
    code_hash: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = _now_column()
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(sa.String(10), default="ES256")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    private_key_sealed: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # erased on retirement
    status: Mapped[str] = mapped_column(sa.String(10), default="active")  # active | retired
    created_at: Mapped[datetime] = _now_column()
    retired_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
