"""Issuing tokens: access JWTs (users, vendor workers), MFA tickets, rotating refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from jose import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.identity.deps import Identity, after_commit
from services.api.identity.models import ProjectMembership, RefreshToken, User
from shared.auth.keys import ALGORITHM
from shared.auth.tokens import ACCESS_TYP, MFA_TYP, TYP_CLAIM

REFRESH_PREFIX = "qrt_"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


async def sign(identity: Identity, claims: dict[str, Any], *, typ: str, ttl: int,
               now: float | None = None) -> tuple[str, int]:
    kid, pem = await identity.keys.signer()
    issued = int(now if now is not None else time.time())
    s = identity.settings
    full = {"iss": s.jwt_issuer, "aud": s.jwt_audience, "iat": issued, "nbf": issued, "exp": issued + ttl,
            "jti": claims.pop("jti", None) or str(uuid.uuid4()), "typ": TYP_CLAIM[typ], **claims}
    token = jwt.encode(full, pem.decode("ascii"), algorithm=ALGORITHM, headers={"kid": kid, "typ": typ})
    return token, full["exp"]


async def project_roles_of(session: AsyncSession, user: User) -> dict[str, str]:
    rows = await session.execute(sa.select(ProjectMembership.project_id, ProjectMembership.role)
                                 .where(ProjectMembership.user_id == user.id,
                                        ProjectMembership.org_id == user.org_id))
    return {str(pid): role for pid, role in rows.all()}


async def issue_access_token(identity: Identity, session: AsyncSession, user: User, session_id: uuid.UUID
                             ) -> tuple[str, int]:
    claims = {"sub": str(user.id), "kind": "user", "org": str(user.org_id), "roles": sorted(user.roles or []),
              "proj": await project_roles_of(session, user), "sid": str(session_id), "ver": user.token_version}
    return await sign(identity, claims, typ=ACCESS_TYP, ttl=identity.settings.access_token_ttl_seconds)


async def issue_mfa_ticket(identity: Identity, user: User, purpose: str) -> str:
    token, _ = await sign(identity, {"sub": str(user.id), "kind": "user", "org": str(user.org_id),
                                     "purpose": purpose}, typ=MFA_TYP,
                          ttl=identity.settings.mfa_ticket_ttl_seconds)
    return token


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_at: datetime
    session_id: uuid.UUID


async def _new_refresh(session: AsyncSession, identity: Identity, user_id: uuid.UUID, family_id: uuid.UUID
                       ) -> tuple[str, datetime]:
    raw = REFRESH_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=identity.settings.refresh_token_ttl_seconds)
    session.add(RefreshToken(family_id=family_id, user_id=user_id, token_hash=sha256_hex(raw), expires_at=expires))
    await session.flush()
    return raw, expires


async def start_session(identity: Identity, session: AsyncSession, user: User) -> TokenPair:
    family = uuid.uuid4()
    raw, expires = await _new_refresh(session, identity, user.id, family)
    access, exp = await issue_access_token(identity, session, user, family)
    return TokenPair(access, raw, exp - int(time.time()), expires, family)


class RefreshReuse(Exception):
    def __init__(self, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        self.user_id, self.family_id = user_id, family_id


async def rotate_refresh(identity: Identity, session: AsyncSession, raw: str) -> tuple[User, TokenPair] | None:
    """Use a refresh token once: a new pair in the same family. None if unknown/expired/revoked.

    Raises RefreshReuse when an already used token comes back (stolen copy or replay): the caller revokes
    the whole family."""
    if not isinstance(raw, str) or not raw.startswith(REFRESH_PREFIX) or len(raw) > 200:
        return None
    digest = sha256_hex(raw)
    now = datetime.now(UTC)
    claimed = (await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None),
               RefreshToken.revoked_at.is_(None), RefreshToken.expires_at > now)
        .values(used_at=now).returning(RefreshToken.user_id, RefreshToken.family_id))).first()
    if claimed is None:
        row = (await session.execute(sa.select(RefreshToken).where(RefreshToken.token_hash == digest))).scalar()
        if row is not None and row.used_at is not None:
            raise RefreshReuse(row.user_id, row.family_id)
        return None
    user = await session.get(User, claimed.user_id)
    if user is None or user.disabled:
        return None
    new_raw, expires = await _new_refresh(session, identity, user.id, claimed.family_id)
    access, exp = await issue_access_token(identity, session, user, claimed.family_id)
    return user, TokenPair(access, new_raw, exp - int(time.time()), expires, claimed.family_id)


async def revoke_family(identity: Identity, session: AsyncSession, family_id: uuid.UUID, reason: str) -> None:
    await session.execute(sa.update(RefreshToken)
                          .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
                          .values(revoked_at=datetime.now(UTC), revoke_reason=reason))
    until = time.time() + identity.settings.access_token_ttl_seconds
    after_commit(session, lambda: identity.revocations.revoke_session(str(family_id), until=until))


async def revoke_user_sessions(identity: Identity, session: AsyncSession, user: User, reason: str) -> None:
    """Every refresh family of the user revoked and every access token already out rejected."""
    await session.execute(sa.update(RefreshToken)
                          .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                          .values(revoked_at=datetime.now(UTC), revoke_reason=reason))
    user.token_version = (user.token_version or 0) + 1
    await session.flush()
    user_id, version = str(user.id), user.token_version
    after_commit(session, lambda: identity.revocations.set_user_version(user_id, version))
