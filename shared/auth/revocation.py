"""Revocation markers in Redis: how a revocation in api reaches every service at once.

The api's database is the source of truth; the api writes a marker here in the same request that commits the
revocation (and rewrites all live markers at startup, so a flushed Redis cannot resurrect a revoked token).
Every service checks the markers of a token in one round-trip on every request. If Redis cannot answer, the
request fails closed (503), never open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.errors import ServiceUnavailable


def _key(namespace: str, kind: str, value: str) -> str:
    return f"{namespace}:auth:revoked:{kind}:{value}"


def user_version_key(namespace: str, user_id: str) -> str:
    return f"{namespace}:auth:user-version:{user_id}"


@dataclass(frozen=True)
class TokenRefs:
    jti: str
    kid: str
    session_id: str | None = None
    grant_id: str | None = None
    user_id: str | None = None
    user_version: int | None = None


class RevocationList:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace

    async def revoke_token(self, jti: str, *, until: float | None = None) -> None:
        await self._mark("jti", jti, until)

    async def revoke_session(self, session_id: str, *, until: float | None = None) -> None:
        await self._mark("session", session_id, until)

    async def revoke_grant(self, grant_id: str, *, until: float | None = None) -> None:
        await self._mark("grant", grant_id, until)

    async def retire_key(self, kid: str) -> None:
        await self._mark("kid", kid, None)

    async def set_user_version(self, user_id: str, version: int) -> None:
        """Access tokens of `user_id` carrying an older version stop working (disable, reset, role change)."""
        await self.redis.set(user_version_key(self.namespace, user_id), str(version))

    async def _mark(self, kind: str, value: str, until: float | None) -> None:
        key = _key(self.namespace, kind, value)
        if until is None:
            await self.redis.set(key, "1")
            return
        ttl = int(until - time.time()) + 60  # outlive the token it cuts off, with clock slack
        if ttl > 0:
            await self.redis.set(key, "1", ex=ttl)

    async def reason_revoked(self, refs: TokenRefs) -> str | None:
        """Why this token is revoked, or None. One MGET; raises 503 if Redis does not answer."""
        checks: list[tuple[str, str]] = [("token", _key(self.namespace, "jti", refs.jti)),
                                         ("signing key", _key(self.namespace, "kid", refs.kid))]
        if refs.session_id:
            checks.append(("session", _key(self.namespace, "session", refs.session_id)))
        if refs.grant_id:
            checks.append(("grant", _key(self.namespace, "grant", refs.grant_id)))
        if refs.user_id is not None:
            checks.append(("user", user_version_key(self.namespace, refs.user_id)))
        try:
            values = await self.redis.mget([key for _, key in checks])
        except Exception as exc:
            raise ServiceUnavailable("token revocation status cannot be checked right now") from exc
        for (what, _), value in zip(checks, values, strict=True):
            if value is None:
                continue
            if what == "user":
                if refs.user_version is None or int(value) > refs.user_version:
                    return "user sessions were revoked"
                continue
            return f"{what} revoked"
        return None
