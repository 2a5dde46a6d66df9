"""HTTP routes of the identity domain. Each declares its access policy; logic lives in flows/service."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status

from services.api.identity import flows, service
from services.api.identity import totp as totp_ops
from services.api.identity.audit import audit
from services.api.identity.deps import Identity, get_identity, request_meta, unit_of_work
from services.api.identity.models import User
from services.api.identity.schemas import (
    CodeRequest,
    EnrolmentResponse,
    GrantCreate,
    GrantOut,
    LoginRequest,
    MemberOut,
    MemberSet,
    MfaChallenge,
    OrgOut,
    OrgUpdate,
    PrincipalOut,
    ProjectAccessOut,
    RecoveryCodesResponse,
    RefreshRequest,
    SecondFactorRequest,
    TicketConfirmRequest,
    TicketRequest,
    TokenResponse,
    UserCreate,
    UserOut,
    UserUpdate,
    WorkerTokenCreate,
    WorkerTokenMinted,
    WorkerTokenOut,
)
from services.api.identity.tokens import TokenPair
from services.api.projects import policy as project_policy
from shared.auth import Principal, Role, public, require
from shared.errors import Conflict, Unauthorized

ADMIN = {Role.ORG_ADMIN}
USER_MANAGERS = {Role.ORG_ADMIN, Role.VENDOR_MANAGER}


def rate_limited(bucket: str) -> Any:
    async def limit(request: Request, identity: Identity = Depends(get_identity)) -> None:
        ip = request.client.host if request.client else "unknown"
        await identity.limiter.hit(f"auth:{bucket}", ip, limit=identity.settings.auth_rate_limit_per_minute,
                                   window_seconds=60)

    return Depends(limit)


def _tokens(pair: TokenPair, recovery_codes: list[str] | None = None) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in,
                         refresh_token=pair.refresh_token, refresh_expires_at=pair.refresh_expires_at,
                         recovery_codes=recovery_codes)


def _login_answer(outcome: flows.LoginOutcome, identity: Identity) -> TokenResponse | MfaChallenge:
    if outcome.status == "ok":
        return _tokens(outcome.tokens, outcome.recovery_codes)
    nxt = "/api/v1/auth/login/totp" if outcome.status == "mfa_required" else "/api/v1/auth/login/totp/enrol"
    return MfaChallenge(status=outcome.status, mfa_ticket=outcome.mfa_ticket,
                        expires_in=identity.settings.mfa_ticket_ttl_seconds, next=nxt)


# -- authentication (public) ----------------------------------------------------------------------------

auth = APIRouter(prefix="/auth", tags=["auth"])
NO_STORE = {"Cache-Control": "no-store"}


@auth.post("/login", response_model=TokenResponse | MfaChallenge, dependencies=[
    public("sign-in: password step"), rate_limited("login")],
    summary="Sign in with e-mail and password: tokens, or a ticket for the second factor",
    responses={401: {"description": "wrong e-mail or password (same answer for both)"},
               429: {"description": "throttled or locked"}})
async def login(body: LoginRequest, request: Request, response: Response,
                identity: Identity = Depends(get_identity)) -> TokenResponse | MfaChallenge:
    response.headers.update(NO_STORE)
    outcome = await flows.password_login(identity, request_meta(request), body.email, body.password)
    return _login_answer(outcome, identity)


@auth.post("/login/totp", response_model=TokenResponse, dependencies=[
    public("sign-in: second factor with an MFA ticket"), rate_limited("login-totp")],
    summary="Exchange the MFA ticket and a TOTP code (or a recovery code) for tokens")
async def login_totp(body: SecondFactorRequest, request: Request, response: Response,
                     identity: Identity = Depends(get_identity)) -> TokenResponse:
    response.headers.update(NO_STORE)
    outcome = await flows.second_factor_login(identity, request_meta(request), body.mfa_ticket, code=body.code,
                                              recovery_code=body.recovery_code)
    return _tokens(outcome.tokens)


@auth.post("/login/totp/enrol", response_model=EnrolmentResponse, dependencies=[
    public("sign-in: forced TOTP enrolment with an MFA ticket"), rate_limited("login-enrol")],
    summary="With an enrolment ticket: a new TOTP secret, provisioning URI and QR code")
async def login_totp_enrol(body: TicketRequest, response: Response,
                           identity: Identity = Depends(get_identity)) -> EnrolmentResponse:
    response.headers.update(NO_STORE)
    enrolment = await flows.ticket_enrolment(identity, body.mfa_ticket)
    return EnrolmentResponse(**enrolment.__dict__, next="/api/v1/auth/login/totp/confirm")


@auth.post("/login/totp/confirm", response_model=TokenResponse, dependencies=[
    public("sign-in: confirm forced TOTP enrolment with an MFA ticket"), rate_limited("login-enrol")],
    summary="Confirm enrolment with a first code: tokens and 10 recovery codes (shown once)")
async def login_totp_confirm(body: TicketConfirmRequest, request: Request, response: Response,
                             identity: Identity = Depends(get_identity)) -> TokenResponse:
    response.headers.update(NO_STORE)
    outcome = await flows.ticket_confirm(identity, request_meta(request), body.mfa_ticket, body.code)
    return _tokens(outcome.tokens, outcome.recovery_codes)


@auth.post("/refresh", response_model=TokenResponse, dependencies=[
    public("token refresh: the refresh token is the credential"), rate_limited("refresh")],
    summary="Rotate a refresh token: a new pair; a reused refresh token revokes the whole session")
async def refresh(body: RefreshRequest, request: Request, response: Response,
                  identity: Identity = Depends(get_identity)) -> TokenResponse:
    response.headers.update(NO_STORE)
    return _tokens(await flows.refresh(identity, request_meta(request), body.refresh_token))


@auth.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End this session (all its tokens)")
async def logout(request: Request, principal: Principal = require("auth.logout", roles="any"),
                 identity: Identity = Depends(get_identity)) -> Response:
    await flows.logout(identity, request_meta(request), principal)
    return Response(status_code=204)


async def _jwks(request: Request) -> Response:
    from fastapi.responses import JSONResponse

    identity = get_identity(request)
    return JSONResponse(await identity.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})


@auth.get("/jwks", dependencies=[public("public signing keys")], summary="JSON Web Key Set of the token signers")
async def jwks(request: Request) -> Response:
    return await _jwks(request)


well_known = APIRouter(tags=["auth"])


@well_known.get("/.well-known/jwks.json", dependencies=[public("public signing keys")],
                summary="JSON Web Key Set (well-known location)")
async def well_known_jwks(request: Request) -> Response:
    return await _jwks(request)


@auth.get("/whoami", response_model=PrincipalOut, summary="The verified caller (users and worker tokens)")
async def whoami(principal: Principal = require("auth.whoami", roles="any", workers=True)) -> PrincipalOut:
    return PrincipalOut(kind=principal.kind, subject=principal.subject, org_id=principal.org_id,
                        token_id=principal.token_id, roles=sorted(principal.roles),
                        project_roles=dict(principal.project_roles),
                        scopes=sorted(principal.scopes) if principal.scopes is not None else None,
                        vendor_id=principal.vendor_id, grant_id=principal.grant_id,
                        owner_org_id=principal.owner_org_id)


# -- my account -----------------------------------------------------------------------------------------

me = APIRouter(prefix="/me", tags=["auth"])


async def _me(session, principal: Principal) -> User:  # noqa: ANN001
    user = await session.get(User, uuid.UUID(principal.subject))
    if user is None or user.disabled:
        raise Unauthorized("account not available")
    return user


@me.get("", response_model=UserOut, summary="My account")
async def my_account(principal: Principal = require("me.view", roles="any"),
                     identity: Identity = Depends(get_identity)) -> UserOut:
    async with identity.ctx.session_factory() as session:
        user = await _me(session, principal)
        return UserOut.model_validate(user, from_attributes=True).model_copy(update={"totp_active": user.totp_active})


@me.post("/totp/enrol", response_model=EnrolmentResponse, summary="Start TOTP enrolment (confirm to activate)")
async def my_totp_enrol(principal: Principal = require("me.totp", roles="any"),
                        identity: Identity = Depends(get_identity)) -> EnrolmentResponse:
    async with unit_of_work(identity) as session:
        user = await _me(session, principal)
        if user.totp_active:
            raise Conflict("TOTP is already active; an org admin can reset it for re-enrolment")
        enrolment = await totp_ops.start_enrolment(identity, session, user)
    return EnrolmentResponse(**enrolment.__dict__, next="/api/v1/me/totp/confirm")


@me.post("/totp/confirm", response_model=RecoveryCodesResponse,
         summary="Activate TOTP with a first code; returns 10 recovery codes (shown once)")
async def my_totp_confirm(body: CodeRequest, request: Request,
                          principal: Principal = require("me.totp", roles="any"),
                          identity: Identity = Depends(get_identity)) -> RecoveryCodesResponse:
    meta = request_meta(request)
    async with unit_of_work(identity) as session:
        user = await _me(session, principal)
        codes = await totp_ops.confirm_enrolment(identity, session, user, body.code)
        if codes is not None:
            await audit(session, identity, meta, action="totp.enrolled", outcome="success", resource_type="user",
                        resource_id=user.id, actor=principal)
    if codes is None:
        async with unit_of_work(identity) as session:
            await audit(session, identity, meta, action="totp.enrolled", outcome="failure", resource_type="user",
                        resource_id=principal.subject, actor=principal, reason="bad_code")
        raise Unauthorized(flows.INVALID_CODE, type="invalid-code")
    return RecoveryCodesResponse(recovery_codes=codes)


# -- organisation and users -----------------------------------------------------------------------------

orgs = APIRouter(prefix="/orgs", tags=["organisations"])


@orgs.get("/current", response_model=OrgOut, summary="My organisation")
async def current_org(principal: Principal = require("org.view", roles="any"),
                      identity: Identity = Depends(get_identity)) -> OrgOut:
    async with identity.ctx.session_factory() as session:
        return OrgOut.model_validate(await service.own_org(session, principal))


@orgs.patch("/current", response_model=OrgOut, summary="Change my organisation (e.g. require TOTP for everyone)")
async def update_current_org(body: OrgUpdate, request: Request,
                             principal: Principal = require("org.manage", roles=ADMIN),
                             identity: Identity = Depends(get_identity)) -> OrgOut:
    async with unit_of_work(identity) as session:
        org = await service.update_org(identity, session, request_meta(request), principal, name=body.name,
                                       require_totp=body.require_totp)
        return OrgOut.model_validate(org)


users = APIRouter(prefix="/users", tags=["users"])


def _user_out(user: User) -> UserOut:
    return UserOut(id=user.id, org_id=user.org_id, email=user.email, name=user.name, roles=list(user.roles or []),
                   disabled=user.disabled, totp_active=user.totp_active, created_at=user.created_at)


@users.get("", response_model=list[UserOut], summary="Users of my organisation")
async def list_users(principal: Principal = require("users.list", roles=USER_MANAGERS),
                     identity: Identity = Depends(get_identity)) -> list[UserOut]:
    async with identity.ctx.session_factory() as session:
        return [_user_out(u) for u in await service.list_users(session, principal)]


@users.post("", response_model=UserOut, status_code=201,
            summary="Create a user (org admin: any role; vendor manager: a worker without roles)")
async def create_user(body: UserCreate, request: Request,
                      principal: Principal = require("users.create", roles=USER_MANAGERS),
                      identity: Identity = Depends(get_identity)) -> UserOut:
    async with unit_of_work(identity) as session:
        user = await service.create_user_by(identity, session, request_meta(request), principal, email=body.email,
                                            name=body.name, password=body.password, roles=body.roles)
        await session.refresh(user)
        return _user_out(user)


@users.get("/{user_id}", response_model=UserOut, summary="A user of my organisation")
async def get_user(user_id: str, principal: Principal = require("users.view", roles=USER_MANAGERS,
                                                                 resource_params=["user_id"]),
                   identity: Identity = Depends(get_identity)) -> UserOut:
    async with identity.ctx.session_factory() as session:
        return _user_out(await service.get_user(session, principal, user_id))


@users.patch("/{user_id}", response_model=UserOut, summary="Change roles, disable or rename a user")
async def update_user(user_id: str, body: UserUpdate, request: Request,
                      principal: Principal = require("users.manage", roles=ADMIN, resource_params=["user_id"]),
                      identity: Identity = Depends(get_identity)) -> UserOut:
    async with unit_of_work(identity) as session:
        user = await service.update_user(identity, session, request_meta(request), principal, user_id,
                                         roles=body.roles, disabled=body.disabled, name=body.name)
        return _user_out(user)


@users.post("/{user_id}/totp/reset", response_model=UserOut,
            summary="Disable a user's TOTP and recovery codes and end their sessions; they re-enrol at next sign-in")
async def reset_user_totp(user_id: str, request: Request,
                          principal: Principal = require("users.manage", roles=ADMIN, resource_params=["user_id"]),
                          identity: Identity = Depends(get_identity)) -> UserOut:
    async with unit_of_work(identity) as session:
        return _user_out(await service.reset_totp(identity, session, request_meta(request), principal, user_id))


# -- project memberships and access ---------------------------------------------------------------------

members = APIRouter(prefix="/projects/{project_id}", tags=["projects"])
MEMBER_ADMINS = dict(roles={Role.ORG_ADMIN, Role.PROJECT_MANAGER}, project_roles={Role.PROJECT_MANAGER},
                     project_param="project_id")


@members.get("/members", response_model=list[MemberOut], summary="Members of a project and their roles")
async def list_members(project_id: str, principal: Principal = require("project.members.view", **MEMBER_ADMINS),
                       identity: Identity = Depends(get_identity)) -> list[MemberOut]:
    async with identity.ctx.session_factory() as session:
        return [MemberOut(user_id=u.id, email=u.email, role=m.role)
                for m, u in await service.list_members(session, principal, project_id)]


@members.put("/members/{user_id}", response_model=MemberOut, summary="Add a member or change their project role")
async def set_member(project_id: str, user_id: str, body: MemberSet, request: Request,
                     principal: Principal = require("project.members.manage", resource_params=["user_id"],
                                                    **MEMBER_ADMINS),
                     identity: Identity = Depends(get_identity)) -> MemberOut:
    async with unit_of_work(identity) as session:
        m = await service.set_member(identity, session, request_meta(request), principal, project_id, user_id,
                                     body.role)
        user = await session.get(User, m.user_id)
        return MemberOut(user_id=m.user_id, email=user.email, role=m.role)


@members.delete("/members/{user_id}", status_code=204, summary="Remove a member from a project")
async def remove_member(project_id: str, user_id: str, request: Request,
                        principal: Principal = require("project.members.manage", resource_params=["user_id"],
                                                       **MEMBER_ADMINS),
                        identity: Identity = Depends(get_identity)) -> Response:
    async with unit_of_work(identity) as session:
        await service.remove_member(identity, session, request_meta(request), principal, project_id, user_id)
    return Response(status_code=204)


@members.get("/my-access", response_model=ProjectAccessOut,
             summary="What the caller (user or worker token) may do on this project")
async def my_project_access(project_id: str, principal: Principal = require(
        "project.access.view", roles={Role.ORG_ADMIN, Role.PROJECT_MANAGER},
        project_roles={Role.PROJECT_MANAGER, Role.REVIEWER, Role.ANNOTATOR}, project_param="project_id",
        workers=True), identity: Identity = Depends(get_identity)) -> ProjectAccessOut:
    async with identity.ctx.session_factory() as session:
        project = await project_policy.load_project(session, principal, project_id)
        return ProjectAccessOut(project_id=project.id, role=project_policy.project_role(principal, project),
                                can_view=True, can_manage=project_policy.can_manage(principal, project),
                                can_review=project_policy.can_review(principal, project),
                                can_annotate=project_policy.can_annotate(principal, project),
                                scopes=sorted(principal.scopes) if principal.scopes is not None else None)


# -- vendor grants and worker tokens --------------------------------------------------------------------

grants = APIRouter(prefix="/grants", tags=["vendors"])
VENDOR_SIDE = {Role.ORG_ADMIN, Role.VENDOR_MANAGER}


async def _grant_out(session, grant) -> GrantOut:  # noqa: ANN001
    return GrantOut(id=grant.id, owner_org_id=grant.owner_org_id, vendor_org_id=grant.vendor_org_id,
                    project_ids=await service.grant_projects(session, grant), roles=grant.roles, scopes=grant.scopes,
                    created_at=grant.created_at, expires_at=grant.expires_at, revoked_at=grant.revoked_at)


@grants.post("", response_model=GrantOut, status_code=201,
             summary="Grant a vendor organisation access to some of my projects (capped roles and scopes)")
async def create_grant(body: GrantCreate, request: Request,
                       principal: Principal = require("grants.create", roles=ADMIN),
                       identity: Identity = Depends(get_identity)) -> GrantOut:
    async with unit_of_work(identity) as session:
        grant, _ = await service.create_grant(identity, session, request_meta(request), principal,
                                              vendor=body.vendor, project_ids=body.project_ids, roles=body.roles,
                                              scopes=body.scopes, expires_at=body.expires_at)
        await session.refresh(grant)
        return await _grant_out(session, grant)


@grants.get("", response_model=list[GrantOut], summary="Grants I issued (data owner) or received (vendor)")
async def list_grants(principal: Principal = require("grants.list", roles=VENDOR_SIDE),
                      identity: Identity = Depends(get_identity)) -> list[GrantOut]:
    async with identity.ctx.session_factory() as session:
        return [await _grant_out(session, g) for g in await service.list_grants(session, principal)]


@grants.get("/{grant_id}", response_model=GrantOut, summary="One grant")
async def get_grant(grant_id: str, principal: Principal = require("grants.view", roles=VENDOR_SIDE,
                                                                   resource_params=["grant_id"]),
                    identity: Identity = Depends(get_identity)) -> GrantOut:
    async with identity.ctx.session_factory() as session:
        return await _grant_out(session, await service.get_grant(session, principal, grant_id))


@grants.post("/{grant_id}/revoke", response_model=GrantOut,
             summary="Revoke a grant: every worker token under it stops working at once, in every service")
async def revoke_grant(grant_id: str, request: Request,
                       principal: Principal = require("grants.revoke", roles=ADMIN, resource_params=["grant_id"]),
                       identity: Identity = Depends(get_identity)) -> GrantOut:
    async with unit_of_work(identity) as session:
        grant = await service.revoke_grant(identity, session, request_meta(request), principal, grant_id)
        return await _grant_out(session, grant)


@grants.post("/{grant_id}/tokens", response_model=WorkerTokenMinted, status_code=201,
             summary="Mint a scoped worker token within the grant (shown once)")
async def mint_token(grant_id: str, body: WorkerTokenCreate, request: Request, response: Response,
                     principal: Principal = require("worker_tokens.mint", roles=VENDOR_SIDE,
                                                    resource_params=["grant_id"]),
                     identity: Identity = Depends(get_identity)) -> WorkerTokenMinted:
    response.headers.update(NO_STORE)
    async with unit_of_work(identity) as session:
        row, token = await service.mint_worker_token(
            identity, session, request_meta(request), principal, grant_id, worker_id=body.worker_id, name=body.name,
            project_ids=body.project_ids, scopes=body.scopes, role=body.role, expires_in_days=body.expires_in_days)
        await session.refresh(row)
        return WorkerTokenMinted(**WorkerTokenOut.model_validate(row).model_dump(), token=token)


@grants.get("/{grant_id}/tokens", response_model=list[WorkerTokenOut], summary="Worker tokens under a grant")
async def list_tokens(grant_id: str, principal: Principal = require("worker_tokens.list", roles=VENDOR_SIDE,
                                                                     resource_params=["grant_id"]),
                      identity: Identity = Depends(get_identity)) -> list[WorkerTokenOut]:
    async with identity.ctx.session_factory() as session:
        return [WorkerTokenOut.model_validate(t) for t in await service.list_worker_tokens(session, principal,
                                                                                            grant_id)]


@grants.post("/{grant_id}/tokens/{token_id}/revoke", response_model=WorkerTokenOut,
             summary="Revoke one worker token, at once, in every service")
async def revoke_token(grant_id: str, token_id: str, request: Request,
                       principal: Principal = require("worker_tokens.revoke", roles=VENDOR_SIDE,
                                                      resource_params=["grant_id", "token_id"]),
                       identity: Identity = Depends(get_identity)) -> WorkerTokenOut:
    async with unit_of_work(identity) as session:
        token = await service.revoke_worker_token(identity, session, request_meta(request), principal, grant_id,
                                                  token_id)
        return WorkerTokenOut.model_validate(token)


routers = [auth, me, orgs, users, members, grants]
