"""Failed-attempt throttling for passwords and second factors: per account and per IP, with lockout.

Account keys for the password step are a hash of the e-mail as typed, so an unknown e-mail is throttled and
locked exactly like a real one (the lockout itself reveals nothing).
"""

from __future__ import annotations

import hashlib

from services.api.identity.deps import Identity
from shared.errors import ServiceUnavailable, TooManyRequests

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def account_subject(email: str) -> str:
    return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def user_subject(user_id: object) -> str:
    return f"user:{user_id}"


class Throttle:
    def __init__(self, identity: Identity) -> None:
        s = identity.settings
        self.redis = identity.ctx.redis
        self.ns = f"{s.stream_prefix}:auth:throttle"
        self.window = s.login_failure_window_seconds
        self.lockout = s.login_lockout_seconds
        self.max_account = s.login_max_failures
        self.max_ip = s.ip_max_failures

    async def check(self, *subjects: str, ip: str | None) -> None:
        """429 if any account subject is locked or the IP has failed too often."""
        keys = [f"{self.ns}:lock:{s}" for s in subjects]
        if ip:
            keys.append(f"{self.ns}:fail:ip:{ip}")
        try:
            values = await self.redis.mget(keys)
            for key, value in zip(keys, values, strict=True):
                if value is None:
                    continue
                if ":lock:" in key:
                    ttl = await self.redis.ttl(key)
                    raise TooManyRequests("too many failed attempts; this account is temporarily locked",
                                          retry_after=max(ttl, 1), type="account-locked")
                if int(value) >= self.max_ip:
                    ttl = await self.redis.ttl(key)
                    raise TooManyRequests("too many failed attempts from this address", retry_after=max(ttl, 1))
        except TooManyRequests:
            raise
        except Exception as exc:
            raise ServiceUnavailable("sign-in is unavailable right now") from exc

    async def failed(self, subject: str, ip: str | None) -> bool:
        """Count a failure; True if it just locked the account."""
        count = int(await self.redis.eval(_FAIL, 1, f"{self.ns}:fail:{subject}", self.window))
        if ip:
            await self.redis.eval(_FAIL, 1, f"{self.ns}:fail:ip:{ip}", self.window)
        if count >= self.max_account:
            await self.redis.set(f"{self.ns}:lock:{subject}", "1", ex=self.lockout)
            await self.redis.delete(f"{self.ns}:fail:{subject}")
            return True
        return False

    async def succeeded(self, *subjects: str) -> None:
        await self.redis.delete(*[f"{self.ns}:fail:{s}" for s in subjects])

    async def unlock(self, *subjects: str) -> None:
        await self.redis.delete(*[f"{self.ns}:lock:{s}" for s in subjects],
                                *[f"{self.ns}:fail:{s}" for s in subjects])
