"""Sign-in flows: password → (second factor | enrolment) → tokens; refresh rotation; logout.

Designed for a frontend: POST /auth/login answers either tokens or `mfa_required`/`mfa_enrolment_required`
with a short-lived ticket, which the second call exchanges for tokens. Every outcome is audited.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from services.api.identity import totp as totp_ops
from services.api.identity.audit import audit
from services.api.identity.deps import Identity, RequestMeta, unit_of_work
from services.api.identity.models import Organization, User
from services.api.identity.throttle import Throttle, account_subject, user_subject
from services.api.identity.tokens import (
    RefreshReuse,
    TokenPair,
    issue_mfa_ticket,
    revoke_family,
    rotate_refresh,
    start_session,
)
from shared.auth.principal import Principal
from shared.auth.tokens import MFA_TYP, TokenRejected, VerifierConfig, decode_verified
from shared.errors import Conflict, Unauthorized

INVALID_CREDENTIALS = "email or password is incorrect"
INVALID_CODE = "the code is not valid"


@dataclass
class LoginOutcome:
    status: Literal["ok", "mfa_required", "mfa_enrolment_required"]
    tokens: TokenPair | None = None
    mfa_ticket: str | None = None
    recovery_codes: list[str] | None = None


async def password_login(identity: Identity, meta: RequestMeta, email: str, password: str) -> LoginOutcome:
    throttle = Throttle(identity)
    normalised = email.strip().lower()
    account = account_subject(normalised)
    await throttle.check(account, ip=meta.ip)
    async with identity.ctx.session_factory() as session:
        user = (await session.execute(sa.select(User).where(User.email == normalised))).scalar()
    # Same work whether or not the user exists: argon2 runs against a dummy hash for unknown users.
    ok = await identity.hasher.verify(user.password_hash if user else None, password)
    reason = "unknown_account" if user is None else "bad_password" if not ok else None
    if ok and user.disabled:
        ok, reason = False, "disabled"
    if not ok:
        locked = await throttle.failed(account, meta.ip)
        async with unit_of_work(identity) as session:
            await audit(session, identity, meta, action="auth.login", outcome="failure", resource_type="user",
                        resource_id=user.id if user else None, org_id=user.org_id if user else None,
                        actor_id=user.id if user else None, reason=reason, details={"step": "password"})
            if locked:
                await audit(session, identity, meta, action="auth.lockout", outcome="denied", resource_type="user",
                            resource_id=user.id if user else None, org_id=user.org_id if user else None,
                            reason="too_many_failed_passwords")
        raise Unauthorized(INVALID_CREDENTIALS, type="invalid-credentials")
    async with unit_of_work(identity) as session:
        user = await session.get(User, user.id, with_for_update=False)
        if identity.hasher.needs_rehash(user.password_hash):
            user.password_hash = await identity.hasher.hash(password)
        org = await session.get(Organization, user.org_id)
        if user.totp_active or org.require_totp:
            purpose = "login" if user.totp_active else "enrol"
            await audit(session, identity, meta, action="auth.password", outcome="success", resource_type="user",
                        resource_id=user.id, org_id=user.org_id, actor_id=user.id, details={"next": purpose})
            ticket = await issue_mfa_ticket(identity, user, purpose)
            return LoginOutcome(status="mfa_required" if purpose == "login" else "mfa_enrolment_required",
                                mfa_ticket=ticket)
        pair = await start_session(identity, session, user)
        await audit(session, identity, meta, action="auth.login", outcome="success", resource_type="user",
                    resource_id=user.id, org_id=user.org_id, actor_id=user.id, details={"mfa": False})
    await throttle.succeeded(account)
    return LoginOutcome(status="ok", tokens=pair)


async def _ticket_claims(identity: Identity, ticket: str, purpose: str) -> dict[str, Any]:
    try:
        claims, _ = await decode_verified(ticket, identity.keys, VerifierConfig.from_settings(identity.settings),
                                          typ=MFA_TYP)
    except TokenRejected as exc:
        raise Unauthorized(f"MFA ticket rejected: {exc.public}; sign in again", type="invalid-mfa-ticket") from None
    if claims.get("purpose") != purpose:
        raise Unauthorized("this MFA ticket is for another step; sign in again", type="invalid-mfa-ticket")
    return claims


def _ticket_used_key(identity: Identity, jti: str) -> str:
    return f"{identity.settings.stream_prefix}:auth:mfa-ticket-used:{jti}"


async def _consume_ticket(identity: Identity, claims: dict[str, Any]) -> bool:
    ttl = max(1, int(claims["exp"] - time.time()) + 60)
    return bool(await identity.ctx.redis.set(_ticket_used_key(identity, claims["jti"]), "1", nx=True, ex=ttl))


async def _ticket_user(identity: Identity, session, claims: dict[str, Any]) -> User:  # noqa: ANN001
    if await identity.ctx.redis.exists(_ticket_used_key(identity, claims["jti"])):
        raise Unauthorized("this MFA ticket was already used; sign in again", type="invalid-mfa-ticket")
    user = await session.get(User, uuid.UUID(claims["sub"]))
    if user is None or user.disabled or str(user.org_id) != claims.get("org"):
        raise Unauthorized("sign in again", type="invalid-mfa-ticket")
    return user


async def second_factor_login(identity: Identity, meta: RequestMeta, ticket: str, *, code: str | None = None,
                              recovery_code: str | None = None) -> LoginOutcome:
    claims = await _ticket_claims(identity, ticket, "login")
    throttle = Throttle(identity)
    subject = user_subject(claims["sub"])
    await throttle.check(subject, ip=meta.ip)
    method = "totp" if code is not None else "recovery_code"
    pair = None
    async with unit_of_work(identity) as session:
        user = await _ticket_user(identity, session, claims)
        if code is not None:
            ok = await totp_ops.verify_code(identity, session, user, code)
        else:
            ok = await totp_ops.use_recovery_code(identity, session, user, recovery_code or "")
        if ok and not await _consume_ticket(identity, claims):
            raise Unauthorized("this MFA ticket was already used; sign in again", type="invalid-mfa-ticket")
        if ok:
            pair = await start_session(identity, session, user)
            details: dict[str, Any] = {"mfa": method}
            if method == "recovery_code":
                details["recovery_codes_left"] = await totp_ops.remaining_recovery_codes(session, user)
            await audit(session, identity, meta, action="auth.login", outcome="success", resource_type="user",
                        resource_id=user.id, org_id=user.org_id, actor_id=user.id, details=details)
    if pair is None:
        await _second_factor_failed(identity, meta, throttle, subject, user, method)
        raise Unauthorized(INVALID_CODE, type="invalid-code")
    await throttle.succeeded(subject, account_subject(user.email))
    return LoginOutcome(status="ok", tokens=pair)


async def _second_factor_failed(identity: Identity, meta: RequestMeta, throttle: Throttle, subject: str,
                                user: User, method: str) -> None:
    locked = await throttle.failed(subject, meta.ip)
    async with unit_of_work(identity) as session:
        await audit(session, identity, meta, action="auth.login", outcome="failure", resource_type="user",
                    resource_id=user.id, org_id=user.org_id, actor_id=user.id, reason=f"bad_{method}",
                    details={"step": method})
        if locked:
            await audit(session, identity, meta, action="auth.lockout", outcome="denied", resource_type="user",
                        resource_id=user.id, org_id=user.org_id, reason="too_many_failed_codes")


async def ticket_enrolment(identity: Identity, ticket: str) -> totp_ops.Enrolment:
    claims = await _ticket_claims(identity, ticket, "enrol")
    async with unit_of_work(identity) as session:
        user = await _ticket_user(identity, session, claims)
        if user.totp_active:
            raise Conflict("TOTP is already active for this account")
        return await totp_ops.start_enrolment(identity, session, user)


async def ticket_confirm(identity: Identity, meta: RequestMeta, ticket: str, code: str) -> LoginOutcome:
    claims = await _ticket_claims(identity, ticket, "enrol")
    throttle = Throttle(identity)
    subject = user_subject(claims["sub"])
    await throttle.check(subject, ip=meta.ip)
    outcome = None
    async with unit_of_work(identity) as session:
        user = await _ticket_user(identity, session, claims)
        codes = await totp_ops.confirm_enrolment(identity, session, user, code)
        if codes is not None:
            if not await _consume_ticket(identity, claims):
                raise Unauthorized("this MFA ticket was already used; sign in again", type="invalid-mfa-ticket")
            await audit(session, identity, meta, action="totp.enrolled", outcome="success", resource_type="user",
                        resource_id=user.id, org_id=user.org_id, actor_id=user.id)
            pair = await start_session(identity, session, user)
            await audit(session, identity, meta, action="auth.login", outcome="success", resource_type="user",
                        resource_id=user.id, org_id=user.org_id, actor_id=user.id, details={"mfa": "totp_enrolment"})
            outcome = LoginOutcome(status="ok", tokens=pair, recovery_codes=codes)
    if outcome is None:
        await _second_factor_failed(identity, meta, throttle, subject, user, "totp")
        raise Unauthorized(INVALID_CODE, type="invalid-code")
    await throttle.succeeded(subject, account_subject(user.email))
    return outcome


async def refresh(identity: Identity, meta: RequestMeta, raw: str) -> TokenPair:
    try:
        async with unit_of_work(identity) as session:
            result = await rotate_refresh(identity, session, raw)
            if result is not None:
                user, pair = result
                await audit(session, identity, meta, action="auth.refresh", outcome="success",
                            resource_type="session", resource_id=pair.session_id, org_id=user.org_id,
                            actor_id=user.id)
    except RefreshReuse as reuse:
        async with unit_of_work(identity) as session:
            user = await session.get(User, reuse.user_id)
            await revoke_family(identity, session, reuse.family_id, "reuse_detected")
            await audit(session, identity, meta, action="auth.refresh", outcome="denied", resource_type="session",
                        resource_id=reuse.family_id, org_id=user.org_id if user else None, actor_id=reuse.user_id,
                        reason="refresh_token_reuse")
        raise Unauthorized("refresh token was already used: the whole session is revoked; sign in again",
                           type="refresh-token-reused") from None
    if result is None:
        async with unit_of_work(identity) as session:
            await audit(session, identity, meta, action="auth.refresh", outcome="failure", resource_type="session",
                        reason="invalid_refresh_token")
        raise Unauthorized("refresh token is invalid, expired or revoked; sign in again",
                           type="invalid-refresh-token")
    return result[1]


async def logout(identity: Identity, meta: RequestMeta, principal: Principal) -> None:
    async with unit_of_work(identity) as session:
        if principal.session_id:
            await revoke_family(identity, session, uuid.UUID(principal.session_id), "logout")
        await audit(session, identity, meta, action="auth.logout", outcome="success", resource_type="session",
                    resource_id=principal.session_id, actor=principal)
    await identity.revocations.revoke_token(principal.token_id,
                                            until=time.time() + identity.settings.access_token_ttl_seconds)
