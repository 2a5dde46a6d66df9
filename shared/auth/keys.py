"""Where verifiers get the api's public signing keys: a cached JWKS, never a call to api per request.

A `KeySource` answers "which public key has this kid?". `JwksKeySource` keeps the JWKS in memory, refetches
when it expires, and on an unknown kid refetches at most once per cooldown (so a flood of random kids cannot
turn into a flood of fetches). The fetcher is either HTTP (`settings.jwks_url`, production: each service
fetches the api's `/api/v1/auth/jwks`) or an in-process provider the api registers when all three apps share
one process (`quorum up`, tests).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"  # the only signing algorithm Quorum issues or accepts
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]


class KeySource(Protocol):
    async def get(self, kid: str) -> dict[str, Any] | None:
        """The public JWK for `kid`, or None if no such key is (still) published."""


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_signing_key() -> tuple[bytes, dict[str, Any]]:
    """A fresh P-256 key: (PKCS#8 PEM private key, public JWK without kid)."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, public_jwk(private.public_key())


def public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    numbers = public.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64u(numbers.x.to_bytes(32, "big")),
            "y": _b64u(numbers.y.to_bytes(32, "big")), "alg": ALGORITHM, "use": "sig"}


def is_valid_public_jwk(jwk: Any) -> bool:
    """Only P-256 EC public keys: a JWKS entry of any other shape (oct, RSA, private parts) is ignored."""
    return (isinstance(jwk, dict) and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256"
            and jwk.get("alg", ALGORITHM) == ALGORITHM and "d" not in jwk
            and isinstance(jwk.get("x"), str) and isinstance(jwk.get("y"), str)
            and isinstance(jwk.get("kid"), str) and bool(KID_PATTERN.match(jwk["kid"])))


class StaticKeySource:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = {k["kid"]: k for k in jwks.get("keys", []) if is_valid_public_jwk(k)}

    async def get(self, kid: str) -> dict[str, Any] | None:
        return self._keys.get(kid)


class JwksKeySource:
    def __init__(self, fetch: JwksFetcher, *, ttl: float = 300.0, cooldown: float = 10.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._cooldown = cooldown
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> dict[str, Any] | None:
        if not KID_PATTERN.match(kid):
            return None
        now = time.monotonic()
        if now - self._fetched_at > self._ttl or (kid not in self._keys
                                                  and now - self._fetched_at > self._cooldown):
            await self._refresh(kid)
        return self._keys.get(kid)

    async def _refresh(self, kid: str) -> None:
        async with self._lock:
            now = time.monotonic()
            fresh = now - self._fetched_at <= self._ttl
            if fresh and (kid in self._keys or now - self._fetched_at <= self._cooldown):
                return  # another request refreshed while we waited
            try:
                jwks = await self._fetch()
            except Exception:
                if fresh or self._keys:
                    return  # keep serving the last good set through a short api outage
                raise
            self._keys = {k["kid"]: k for k in jwks.get("keys", []) if is_valid_public_jwk(k)}
            self._fetched_at = now

    def invalidate(self) -> None:
        self._fetched_at = float("-inf")


def http_fetcher(url: str, *, timeout: float = 5.0) -> JwksFetcher:
    async def fetch() -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            return response.json()

    return fetch


# In-process JWKS providers, registered by the api app at startup; keyed by the deployment's stream prefix
# so that several independent stacks in one process (tests) never see each other's keys.
_local_providers: dict[str, JwksFetcher] = {}


def register_local_jwks(namespace: str, provider: JwksFetcher) -> None:
    _local_providers[namespace] = provider


def unregister_local_jwks(namespace: str, provider: JwksFetcher | None = None) -> None:
    if provider is None or _local_providers.get(namespace) is provider:
        _local_providers.pop(namespace, None)


def key_source_for(settings: Any) -> KeySource:
    """`settings.jwks_url` if set; else the in-process api (same stream prefix); else `<public_base_url>/api/v1/auth/jwks`."""
    namespace = settings.stream_prefix
    if settings.jwks_url:
        fetch = http_fetcher(settings.jwks_url)
    elif settings.public_base_url and namespace not in _local_providers:
        fetch = http_fetcher(settings.public_base_url.rstrip("/") + "/api/v1/auth/jwks")
    else:
        async def fetch() -> dict[str, Any]:
            provider = _local_providers.get(namespace)
            if provider is None:
                raise LookupError("no JWKS source: set QUORUM_JWKS_URL (or run the api in this process)")
            return await provider()

    return JwksKeySource(fetch, ttl=settings.jwks_cache_seconds, cooldown=settings.jwks_refetch_cooldown_seconds)
