"""Identity wiring of the api process: its own key source, the worker-token check, and revocation resync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import sqlalchemy as sa

from services.api.identity import service
from services.api.identity.deps import Identity, identity_of
from services.api.identity.models import SigningKey, User, VendorGrant, WorkerToken
from shared.app import ServiceContext
from shared.auth.keys import register_local_jwks, unregister_local_jwks
from shared.auth.principal import Principal

log = logging.getLogger("quorum.api.identity")
RESYNC_INTERVAL = 300.0


async def resync_revocations(identity: Identity) -> int:
    """Rewrite every live revocation marker from the database (the source of truth)."""
    now = datetime.now(UTC)
    marks = 0
    async with identity.ctx.session_factory() as session:
        tokens = (await session.execute(sa.select(WorkerToken.id, WorkerToken.expires_at).where(
            WorkerToken.revoked_at.is_not(None), WorkerToken.expires_at > now))).all()
        grants = (await session.scalars(sa.select(VendorGrant.id).where(VendorGrant.revoked_at.is_not(None)))).all()
        users = (await session.execute(sa.select(User.id, User.token_version).where(User.token_version > 0))).all()
        kids = (await session.scalars(sa.select(SigningKey.kid).where(SigningKey.status == "retired"))).all()
    rl = identity.revocations
    for token_id, expires in tokens:
        await rl.revoke_token(str(token_id), until=expires.timestamp())
    for grant_id in grants:
        await rl.revoke_grant(str(grant_id))
    for user_id, version in users:
        current = await rl.redis.get(f"{rl.namespace}:auth:user-version:{user_id}")
        if current is None or int(current) < version:
            await rl.set_user_version(str(user_id), version)
    for kid in kids:
        await rl.retire_key(kid)
    marks = len(tokens) + len(grants) + len(users) + len(kids)
    return marks


async def _resync_forever(identity: Identity) -> None:
    delay = RESYNC_INTERVAL
    while True:
        await asyncio.sleep(delay)
        try:
            await resync_revocations(identity)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("revocation resync failed; retrying", exc_info=True)
            delay = 5.0
            continue
        delay = RESYNC_INTERVAL


async def on_startup(ctx: ServiceContext) -> None:
    identity = identity_of(ctx)
    ctx.extras["key_source"] = identity.keys

    async def worker_token_check(principal: Principal) -> str | None:
        return await service.worker_token_rejection(identity, principal)

    ctx.extras["token_check"] = worker_token_check
    ctx.extras["jwks_provider"] = identity.keys.jwks
    register_local_jwks(ctx.settings.stream_prefix, identity.keys.jwks)
    with contextlib.suppress(Exception):  # Redis or the database may be down: readiness reports that
        await asyncio.wait_for(resync_revocations(identity), timeout=5.0)
    ctx.tasks.append(asyncio.create_task(_resync_forever(identity), name="api-revocation-resync"))


async def on_shutdown(ctx: ServiceContext) -> None:
    unregister_local_jwks(ctx.settings.stream_prefix, ctx.extras.get("jwks_provider"))
