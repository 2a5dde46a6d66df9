"""Request and response bodies of the identity routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.validation import NulFreeModel


class Strict(NulFreeModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    status: Literal["ok"] = "ok"
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_at: datetime
    recovery_codes: list[str] | None = Field(default=None, description="only right after TOTP enrolment; shown once")


class MfaChallenge(BaseModel):
    status: Literal["mfa_required", "mfa_enrolment_required"]
    mfa_ticket: str
    expires_in: int
    next: str = Field(description="where to send the ticket next")


class SecondFactorRequest(Strict):
    mfa_ticket: str = Field(max_length=4096)
    code: str | None = Field(default=None, max_length=10, description="6-digit TOTP code")
    recovery_code: str | None = Field(default=None, max_length=40)

    @model_validator(mode="after")
    def one_factor(self) -> SecondFactorRequest:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("send exactly one of code or recovery_code")
        return self


class TicketRequest(Strict):
    mfa_ticket: str = Field(max_length=4096)


class TicketConfirmRequest(Strict):
    mfa_ticket: str = Field(max_length=4096)
    code: str = Field(max_length=10)


class CodeRequest(Strict):
    code: str = Field(max_length=10)


class RefreshRequest(Strict):
    refresh_token: str = Field(max_length=4096)


class EnrolmentResponse(BaseModel):
    secret: str = Field(description="base32 seed, for manual entry; shown during enrolment only")
    provisioning_uri: str
    qr_svg: str = Field(description="data: URI of an SVG QR code")
    qr_png: str = Field(description="data: URI of a PNG QR code")
    next: str


class RecoveryCodesResponse(BaseModel):
    recovery_codes: list[str]


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    slug: str
    kind: str
    require_totp: bool


class OrgUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    require_totp: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    name: str
    roles: list[str]
    disabled: bool
    totp_active: bool
    created_at: datetime


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = Field(default="", max_length=200)
    password: str | None = Field(default=None, max_length=1024,
                                 description="omit for token-only vendor workers (cannot sign in)")
    roles: list[str] = Field(default_factory=list, max_length=10)


class UserUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)
    roles: list[str] | None = Field(default=None, max_length=10)
    disabled: bool | None = None


class MemberOut(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str


class MemberSet(Strict):
    role: str


class GrantCreate(Strict):
    vendor: str = Field(description="vendor organisation slug or id", max_length=100)
    project_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)
    roles: list[str] = Field(default_factory=lambda: ["annotator"], max_length=5,
                             description="the most a vendor worker may act as")
    scopes: list[str] = Field(min_length=1, max_length=20)
    expires_at: datetime | None = None


class GrantOut(BaseModel):
    id: uuid.UUID
    owner_org_id: uuid.UUID
    vendor_org_id: uuid.UUID
    project_ids: list[uuid.UUID]
    roles: list[str]
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class WorkerTokenCreate(Strict):
    worker_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    project_ids: list[uuid.UUID] | None = Field(default=None, description="default: every granted project")
    scopes: list[str] | None = Field(default=None, description="default: every granted scope")
    role: str | None = None
    expires_in_days: float = Field(default=30, gt=0)


class WorkerTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    grant_id: uuid.UUID
    worker_id: uuid.UUID
    name: str
    project_ids: list[uuid.UUID]
    scopes: list[str]
    role: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class WorkerTokenMinted(WorkerTokenOut):
    token: str = Field(description="the bearer token; shown once, only its hash is stored")


class PrincipalOut(BaseModel):
    kind: str
    subject: str
    org_id: str
    token_id: str
    roles: list[str]
    project_roles: dict[str, str]
    scopes: list[str] | None
    vendor_id: str | None
    grant_id: str | None
    owner_org_id: str | None


class ProjectAccessOut(BaseModel):
    project_id: uuid.UUID
    role: str | None
    can_view: bool
    can_manage: bool
    can_review: bool
    can_annotate: bool
    scopes: list[str] | None
