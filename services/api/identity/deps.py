"""The identity domain's per-process resources, created once per app on the service context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.identity.passwords import Hasher
from services.api.identity.signing import SigningKeyStore
from shared.app import ServiceContext
from shared.auth.ratelimit import RateLimiter
from shared.auth.revocation import RevocationList


@dataclass
class Identity:
    ctx: ServiceContext
    hasher: Hasher
    keyring: Any
    keys: SigningKeyStore
    revocations: RevocationList
    limiter: RateLimiter

    @property
    def settings(self):  # noqa: ANN201
        return self.ctx.settings


def identity_of(ctx: ServiceContext) -> Identity:
    found = ctx.extras.get("identity")
    if found is None:
        from shared.crypto.keyring import keyring_from_settings

        keyring = ctx.extras.get("keyring") or keyring_from_settings(ctx.settings)
        ctx.extras.setdefault("keyring", keyring)
        found = Identity(ctx=ctx, hasher=Hasher.from_settings(ctx.settings), keyring=keyring,
                         keys=SigningKeyStore(ctx.session_factory, keyring,
                                              cache_seconds=ctx.settings.signing_key_cache_seconds),
                         revocations=RevocationList(ctx.redis, ctx.settings.stream_prefix),
                         limiter=RateLimiter(ctx.redis, ctx.settings.stream_prefix))
        ctx.extras["identity"] = found
    return found


def get_identity(request: Request) -> Identity:
    return identity_of(request.app.state.ctx)


@dataclass(frozen=True)
class RequestMeta:
    """What the audit trail records about the request (never a secret)."""

    ip: str | None
    user_agent: str | None
    request_id: str | None


def request_meta(request: Request) -> RequestMeta:
    from shared.observability import current_request_id

    ua = request.headers.get("user-agent")
    return RequestMeta(ip=request.client.host if request.client else None,
                       user_agent=ua[:200] if ua else None, request_id=current_request_id())


AfterCommit = Callable[[], Awaitable[Any]]


@asynccontextmanager
async def unit_of_work(identity: Identity) -> AsyncIterator[AsyncSession]:
    """One transaction; Redis revocation markers queued with `after_commit` are written once it committed
    (a rolled-back change must not leave a marker behind, e.g. a user version the database never reached)."""
    async with identity.ctx.session_factory() as session:
        async with session.begin():
            session.info["after_commit"] = []
            yield session
        for action in session.info.pop("after_commit", []):
            await action()


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    session.info.setdefault("after_commit", []).append(action)
