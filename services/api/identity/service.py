"""Organisations, users, project memberships, vendor grants and worker tokens: the business operations.

Every lookup is scoped by the caller's organisation; a row of another organisation is "not found".
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.identity import policy
from services.api.identity import totp as totp_ops
from services.api.identity.audit import audit
from services.api.identity.deps import Identity, RequestMeta, after_commit
from services.api.identity.models import (
    GrantProject,
    Organization,
    ProjectMembership,
    User,
    VendorGrant,
    WorkerToken,
)
from services.api.identity.tokens import revoke_user_sessions, sha256_hex, sign
from services.api.projects.models import Project
from services.api.projects.policy import can_manage, load_project
from shared.auth.principal import Principal, Role
from shared.auth.tokens import ACCESS_TYP
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable
from services.api.ids import uuid_or_404 as _uuid

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,98}[a-z0-9]$")




# -- organisations --------------------------------------------------------------------------------------

async def create_org(session: AsyncSession, *, name: str, slug: str, kind: str = "data_owner",
                     require_totp: bool = False) -> Organization:
    if not SLUG.match(slug):
        raise Unprocessable("slug: lower-case letters, digits and dashes, 3-100 characters")
    if kind not in ("data_owner", "vendor"):
        raise Unprocessable("kind must be data_owner or vendor")
    org = Organization(name=name, slug=slug, kind=kind, require_totp=require_totp)
    session.add(org)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an organisation with slug {slug!r} exists") from None
    return org


async def own_org(session: AsyncSession, p: Principal) -> Organization:
    org = await session.get(Organization, uuid.UUID(p.org_id))
    if org is None:
        raise NotFound("organisation not found")
    return org


async def update_org(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, *,
                     name: str | None, require_totp: bool | None) -> Organization:
    org = await own_org(session, p)
    if not policy.can_manage_org(p, org):
        raise Forbidden("only an org admin can change the organisation")
    changes = {}
    if name is not None:
        org.name, changes["name"] = name, name
    if require_totp is not None:
        org.require_totp, changes["require_totp"] = require_totp, require_totp
    await session.flush()
    await audit(session, identity, meta, action="org.update", outcome="success", resource_type="organization",
                resource_id=org.id, actor=p, details=changes)
    return org


# -- users ----------------------------------------------------------------------------------------------

async def create_user(identity: Identity, session: AsyncSession, org: Organization, *, email: str, name: str,
                      password: str | None, roles: list[str]) -> User:
    if password is not None and len(password) < identity.settings.password_min_length:
        raise Unprocessable(f"password: at least {identity.settings.password_min_length} characters")
    user = User(org_id=org.id, email=email.strip().lower(), name=name, roles=sorted(set(roles)),
                password_hash=await identity.hasher.hash(password) if password else None)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("a user with this e-mail exists") from None
    return user


async def create_user_by(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, *,
                         email: str, name: str, password: str | None, roles: list[str]) -> User:
    if not policy.can_manage_users(p):
        raise Forbidden("you cannot create users")
    org = await own_org(session, p)
    allowed = policy.assignable_org_roles(p, org)
    bad = sorted(set(roles) - allowed)
    if bad:
        raise Forbidden(f"you cannot assign role(s) {', '.join(bad)} in this organisation")
    user = await create_user(identity, session, org, email=email, name=name, password=password, roles=roles)
    await audit(session, identity, meta, action="user.create", outcome="success", resource_type="user",
                resource_id=user.id, actor=p, details={"roles": user.roles})
    return user


async def list_users(session: AsyncSession, p: Principal) -> list[User]:
    if not policy.can_manage_users(p):
        raise Forbidden("you cannot list users")
    return list((await session.scalars(sa.select(User).where(User.org_id == uuid.UUID(p.org_id))
                                       .order_by(User.created_at))).all())


async def get_user(session: AsyncSession, p: Principal, user_id: Any) -> User:
    user = (await session.execute(sa.select(User).where(
        User.id == _uuid(user_id, "user"), User.org_id == uuid.UUID(p.org_id)))).scalar()
    if user is None:
        raise NotFound("no such user")
    return user


async def update_user(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, user_id: Any, *,
                      roles: list[str] | None, disabled: bool | None, name: str | None) -> User:
    user = await get_user(session, p, user_id)
    if not policy.can_change_user(p, user):
        raise Forbidden("only an org admin can change users")
    org = await own_org(session, p)
    changes: dict[str, Any] = {}
    revoke = False
    if roles is not None:
        bad = sorted(set(roles) - policy.assignable_org_roles(p, org))
        if bad:
            raise Forbidden(f"you cannot assign role(s) {', '.join(bad)} in this organisation")
        if str(user.id) == p.subject and Role.ORG_ADMIN not in roles:
            raise Conflict("you cannot remove your own org admin role")
        changes["roles"] = {"from": list(user.roles), "to": sorted(set(roles))}
        user.roles, revoke = sorted(set(roles)), True
    if disabled is not None and disabled != user.disabled:
        if str(user.id) == p.subject:
            raise Conflict("you cannot disable yourself")
        user.disabled, changes["disabled"], revoke = disabled, disabled, True
    if name is not None:
        user.name, changes["name"] = name, name
    if revoke:  # tokens carry roles: make every live one re-fetch them
        await revoke_user_sessions(identity, session, user, "user_changed")
    await audit(session, identity, meta, action="user.update", outcome="success", resource_type="user",
                resource_id=user.id, actor=p, details=changes)
    return user


async def reset_totp(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, user_id: Any
                     ) -> User:
    user = await get_user(session, p, user_id)
    if not policy.can_change_user(p, user):
        raise Forbidden("only an org admin can reset a second factor")
    await totp_ops.clear_totp(session, user)
    await revoke_user_sessions(identity, session, user, "totp_reset")
    await audit(session, identity, meta, action="totp.reset", outcome="success", resource_type="user",
                resource_id=user.id, actor=p)
    return user


# -- project memberships --------------------------------------------------------------------------------

async def _managed_project(session: AsyncSession, p: Principal, project_id: Any) -> Project:
    return await load_project(session, p, project_id, allow=can_manage)


async def list_members(session: AsyncSession, p: Principal, project_id: Any) -> list[tuple[ProjectMembership, User]]:
    project = await _managed_project(session, p, project_id)
    rows = await session.execute(sa.select(ProjectMembership, User).join(User, User.id == ProjectMembership.user_id)
                                 .where(ProjectMembership.project_id == project.id,
                                        ProjectMembership.org_id == project.org_id)
                                 .order_by(User.email))
    return [(m, u) for m, u in rows.all()]


async def set_member(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, project_id: Any,
                     user_id: Any, role: str) -> ProjectMembership:
    project = await _managed_project(session, p, project_id)
    if role not in policy.PROJECT_ROLES:
        raise Unprocessable(f"role must be one of {sorted(policy.PROJECT_ROLES)}")
    user = await get_user(session, p, user_id)
    membership = await session.get(ProjectMembership, (project.id, user.id))
    before = membership.role if membership else None
    if membership is None:
        membership = ProjectMembership(project_id=project.id, user_id=user.id, org_id=project.org_id, role=role)
        session.add(membership)
    membership.role = role
    await session.flush()
    if before != role:
        await revoke_user_sessions(identity, session, user, "membership_changed")
    await audit(session, identity, meta, action="membership.set", outcome="success", resource_type="project",
                resource_id=project.id, actor=p, details={"user_id": str(user.id), "from": before, "to": role})
    return membership


async def remove_member(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, project_id: Any,
                        user_id: Any) -> None:
    project = await _managed_project(session, p, project_id)
    user = await get_user(session, p, user_id)
    membership = await session.get(ProjectMembership, (project.id, user.id))
    if membership is None:
        raise NotFound("this user is not a member of the project")
    await session.delete(membership)
    await revoke_user_sessions(identity, session, user, "membership_changed")
    await audit(session, identity, meta, action="membership.remove", outcome="success", resource_type="project",
                resource_id=project.id, actor=p, details={"user_id": str(user.id), "role": membership.role})


# -- vendor grants --------------------------------------------------------------------------------------

async def create_grant(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, *,
                       vendor: str, project_ids: list[uuid.UUID], roles: list[str], scopes: list[str],
                       expires_at: datetime | None) -> tuple[VendorGrant, list[uuid.UUID]]:
    owner = await own_org(session, p)
    if not policy.can_issue_grant(p, owner):
        raise Forbidden("only an org admin of a data-owner organisation can grant vendor access")
    vendor_org = (await session.execute(sa.select(Organization).where(
        sa.or_(Organization.slug == vendor, Organization.id == _maybe_uuid(vendor)),
        Organization.kind == "vendor"))).scalar()
    if vendor_org is None:
        raise NotFound(f"no vendor organisation {vendor!r}")
    bad_roles = sorted(set(roles) - policy.WORKER_ROLES)
    bad_scopes = sorted(set(scopes) - policy.SCOPES)
    if not roles or bad_roles:
        raise Unprocessable(f"roles must be a non-empty subset of {sorted(policy.WORKER_ROLES)}")
    if not scopes or bad_scopes:
        raise Unprocessable(f"scopes must be a non-empty subset of {sorted(policy.SCOPES)}")
    if not project_ids:
        raise Unprocessable("project_ids: grant at least one project")
    wanted = set(project_ids)
    found = set((await session.scalars(sa.select(Project.id).where(
        Project.id.in_(wanted), Project.org_id == owner.id))).all())
    if found != wanted:
        raise NotFound(f"no such project(s): {', '.join(sorted(str(x) for x in wanted - found))}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Unprocessable("expires_at must be in the future")
    grant = VendorGrant(owner_org_id=owner.id, vendor_org_id=vendor_org.id, roles=sorted(set(roles)),
                        scopes=sorted(set(scopes)), created_by=uuid.UUID(p.subject), expires_at=expires_at)
    session.add(grant)
    await session.flush()
    session.add_all([GrantProject(grant_id=grant.id, project_id=pid) for pid in sorted(wanted)])
    await session.flush()
    await audit(session, identity, meta, action="grant.create", outcome="success", resource_type="vendor_grant",
                resource_id=grant.id, actor=p,
                details={"vendor_org_id": str(vendor_org.id), "projects": sorted(str(x) for x in wanted),
                         "roles": grant.roles, "scopes": grant.scopes})
    return grant, sorted(wanted)


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def grant_projects(session: AsyncSession, grant: VendorGrant) -> list[uuid.UUID]:
    return list((await session.scalars(sa.select(GrantProject.project_id)
                                       .where(GrantProject.grant_id == grant.id))).all())


async def list_grants(session: AsyncSession, p: Principal) -> list[VendorGrant]:
    org_id = uuid.UUID(p.org_id)
    rows = (await session.scalars(sa.select(VendorGrant).where(
        sa.or_(VendorGrant.owner_org_id == org_id, VendorGrant.vendor_org_id == org_id))
        .order_by(VendorGrant.created_at))).all()
    return [g for g in rows if policy.can_view_grant(p, g)]


async def get_grant(session: AsyncSession, p: Principal, grant_id: Any) -> VendorGrant:
    org_id = uuid.UUID(p.org_id)
    grant = (await session.execute(sa.select(VendorGrant).where(
        VendorGrant.id == _uuid(grant_id, "grant"),
        sa.or_(VendorGrant.owner_org_id == org_id, VendorGrant.vendor_org_id == org_id)))).scalar()
    if grant is None:
        raise NotFound("no such grant")
    if not policy.can_view_grant(p, grant):
        raise Forbidden("your role does not allow this")
    return grant


async def revoke_grant(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal, grant_id: Any
                       ) -> VendorGrant:
    grant = await get_grant(session, p, grant_id)
    if not policy.can_revoke_grant(p, grant):
        raise Forbidden("only the data owner's org admin can revoke a grant")
    if grant.revoked_at is None:
        now = datetime.now(UTC)
        grant.revoked_at, grant.revoked_by = now, uuid.UUID(p.subject)
        await session.execute(sa.update(WorkerToken).where(WorkerToken.grant_id == grant.id,
                                                           WorkerToken.revoked_at.is_(None))
                              .values(revoked_at=now))
        await session.flush()
        gid = str(grant.id)
        after_commit(session, lambda: identity.revocations.revoke_grant(gid))
        await audit(session, identity, meta, action="grant.revoke", outcome="success", resource_type="vendor_grant",
                    resource_id=grant.id, actor=p)
    return grant


def grant_is_active(grant: VendorGrant) -> bool:
    return grant.revoked_at is None and (grant.expires_at is None or grant.expires_at > datetime.now(UTC))


# -- worker tokens --------------------------------------------------------------------------------------

async def mint_worker_token(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal,
                            grant_id: Any, *, worker_id: Any, name: str, project_ids: list[uuid.UUID] | None,
                            scopes: list[str] | None, role: str | None, expires_in_days: float
                            ) -> tuple[WorkerToken, str]:
    grant = await get_grant(session, p, grant_id)
    if not policy.can_mint_worker_token(p, grant):
        raise Forbidden("only the vendor's manager can mint worker tokens")
    if not grant_is_active(grant):
        raise Conflict("this grant is revoked or expired")
    granted = set(await grant_projects(session, grant))
    projects = set(project_ids) if project_ids else granted
    if not projects <= granted:
        raise Forbidden("token projects must be within the grant")
    token_scopes = set(scopes) if scopes else set(grant.scopes)
    if not token_scopes <= set(grant.scopes):
        raise Forbidden(f"token scopes must be within the grant ({', '.join(grant.scopes)})")
    role = role or (Role.ANNOTATOR if Role.ANNOTATOR in grant.roles else grant.roles[0])
    if role not in grant.roles:
        raise Forbidden(f"role must be within the grant ({', '.join(grant.roles)})")
    worker = (await session.execute(sa.select(User).where(User.id == _uuid(worker_id, "worker"),
                                                          User.org_id == grant.vendor_org_id))).scalar()
    if worker is None:
        raise NotFound("no such worker in your organisation")
    if worker.disabled:
        raise Conflict("this worker is disabled")
    max_days = identity.settings.worker_token_max_ttl_days
    if not 0 < expires_in_days <= max_days:
        raise Unprocessable(f"expires_in_days must be between 0 and {max_days}")
    expires = datetime.now(UTC) + timedelta(days=expires_in_days)
    if grant.expires_at is not None:
        expires = min(expires, grant.expires_at)
    token_id = uuid.uuid4()
    ttl = int(expires.timestamp() - time.time())
    claims = {"jti": str(token_id), "sub": str(worker.id), "kind": "worker", "org": str(grant.vendor_org_id),
              "vendor": str(grant.vendor_org_id), "grant": str(grant.id), "owner": str(grant.owner_org_id),
              "proj": {str(pid): role for pid in sorted(projects)}, "scopes": sorted(token_scopes)}
    jwt_token, _ = await sign(identity, claims, typ=ACCESS_TYP, ttl=ttl)
    row = WorkerToken(id=token_id, grant_id=grant.id, vendor_org_id=grant.vendor_org_id, worker_id=worker.id,
                      name=name, token_hash=sha256_hex(jwt_token), project_ids=sorted(projects),
                      scopes=sorted(token_scopes), role=role, created_by=uuid.UUID(p.subject), expires_at=expires)
    session.add(row)
    await session.flush()
    await audit(session, identity, meta, action="worker_token.mint", outcome="success", resource_type="worker_token",
                resource_id=token_id, actor=p,
                details={"grant_id": str(grant.id), "worker_id": str(worker.id), "name": name,
                         "projects": [str(x) for x in sorted(projects)], "scopes": sorted(token_scopes),
                         "expires_at": expires.isoformat()})
    return row, jwt_token


async def list_worker_tokens(session: AsyncSession, p: Principal, grant_id: Any) -> list[WorkerToken]:
    grant = await get_grant(session, p, grant_id)
    if not policy.can_revoke_worker_token(p, grant):
        raise Forbidden("your role does not allow this")
    return list((await session.scalars(sa.select(WorkerToken).where(WorkerToken.grant_id == grant.id)
                                       .order_by(WorkerToken.created_at))).all())


async def revoke_worker_token(identity: Identity, session: AsyncSession, meta: RequestMeta, p: Principal,
                              grant_id: Any, token_id: Any) -> WorkerToken:
    grant = await get_grant(session, p, grant_id)
    if not policy.can_revoke_worker_token(p, grant):
        raise Forbidden("your role does not allow this")
    token = (await session.execute(sa.select(WorkerToken).where(
        WorkerToken.id == _uuid(token_id, "token"), WorkerToken.grant_id == grant.id))).scalar()
    if token is None:
        raise NotFound("no such token")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        await session.flush()
        jti, until = str(token.id), token.expires_at.timestamp()
        after_commit(session, lambda: identity.revocations.revoke_token(jti, until=until))
        await audit(session, identity, meta, action="worker_token.revoke", outcome="success",
                    resource_type="worker_token", resource_id=token.id, actor=p,
                    details={"grant_id": str(grant.id)})
    return token


async def worker_token_rejection(identity: Identity, principal: Principal) -> str | None:
    """The api's own check of a worker token against the source of truth (Redis markers may be lost)."""
    if principal.kind != "worker":
        return None
    async with identity.ctx.session_factory() as session:
        row = (await session.execute(
            sa.select(WorkerToken.revoked_at, VendorGrant.revoked_at, VendorGrant.expires_at)
            .join(VendorGrant, VendorGrant.id == WorkerToken.grant_id)
            .where(WorkerToken.id == _maybe_uuid(principal.token_id)))).first()
    if row is None:
        return "unknown worker token"
    token_revoked, grant_revoked, grant_expires = row
    if token_revoked is not None:
        return "worker token revoked"
    if grant_revoked is not None or (grant_expires is not None and grant_expires <= datetime.now(UTC)):
        return "grant revoked or expired"
    return None
