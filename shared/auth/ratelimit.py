"""Fixed-window rate limits in Redis, so every replica counts against the same budget."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.errors import ServiceUnavailable, TooManyRequests

# INCR and set the window's expiry atomically (a crash between the two would leave a counter forever).
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""


class RateLimiter:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace

    def _key(self, bucket: str, subject: str) -> str:
        return f"{self.namespace}:ratelimit:{bucket}:{subject}"

    async def hit(self, bucket: str, subject: str, *, limit: int, window_seconds: int) -> None:
        """Count one request; raise 429 (with Retry-After) once `limit` is exceeded in the window."""
        try:
            count, ttl = await self.redis.eval(_HIT, 1, self._key(bucket, subject), window_seconds)
        except Exception as exc:
            raise ServiceUnavailable("rate limiting is unavailable; try again shortly") from exc
        if int(count) > limit:
            raise TooManyRequests(f"too many requests; retry in {max(1, int(ttl))}s", retry_after=max(1, int(ttl)))

    async def count(self, bucket: str, subject: str) -> int:
        value = await self.redis.get(self._key(bucket, subject))
        return int(value or 0)

    async def reset(self, bucket: str, subject: str) -> None:
        await self.redis.delete(self._key(bucket, subject))
