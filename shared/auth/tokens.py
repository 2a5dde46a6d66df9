"""JWT verification every service runs itself: `verify_token(...) -> Principal`.

Strict by construction: only ES256; only the header fields `alg`, `typ`, `kid` (a `jku`, `jwk`, `x5u`, `x5c`
or `crit` header is refused, never followed); the key comes only from our own key source by `kid`, built as
an EC key object, so no other algorithm family can be reached with it (HS256-with-the-public-key confusion
is impossible); iss, aud, exp, nbf, iat, jti, sub and typ are all required and checked; then the revocation
markers in Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jose import jwt
from jose.backends import ECKey
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from shared.auth.keys import ALGORITHM, KID_PATTERN, KeySource
from shared.auth.principal import Principal
from shared.auth.revocation import RevocationList, TokenRefs

ACCESS_TYP = "at+jwt"  # RFC 9068 access-token media type, in the header
MFA_TYP = "mfa+jwt"  # the half-logged-in ticket between password and second factor
TYP_CLAIM = {ACCESS_TYP: "access", MFA_TYP: "mfa"}
ALLOWED_HEADER_FIELDS = frozenset({"alg", "typ", "kid"})
MAX_TOKEN_LENGTH = 16_384
REQUIRED = {"require_exp": True, "require_iat": True, "require_nbf": True, "require_iss": True,
            "require_aud": True, "require_jti": True, "require_sub": True, "verify_at_hash": False}


class TokenRejected(Exception):
    """Why a token was refused. `public` is what the client may be told."""

    def __init__(self, reason: str, public: str = "invalid token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.public = public


@dataclass(frozen=True)
class VerifierConfig:
    issuer: str
    audience: str
    leeway: int = 30
    max_access_lifetime: int = 3600  # seconds between iat and exp for a user access token
    max_worker_lifetime: int = 90 * 86400
    max_mfa_lifetime: int = 900

    @classmethod
    def from_settings(cls, settings: Any) -> VerifierConfig:
        return cls(issuer=settings.jwt_issuer, audience=settings.jwt_audience, leeway=settings.jwt_leeway_seconds,
                   max_access_lifetime=settings.access_token_ttl_seconds,
                   max_worker_lifetime=settings.worker_token_max_ttl_days * 86400,
                   max_mfa_lifetime=settings.mfa_ticket_ttl_seconds)


async def decode_verified(token: str, keys: KeySource, config: VerifierConfig, *, typ: str = ACCESS_TYP
                          ) -> tuple[dict[str, Any], str]:
    """Signature and registered claims checked; returns (claims, kid). Raises TokenRejected."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenRejected("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError:
        raise TokenRejected("malformed header") from None
    if not isinstance(header, dict) or set(header) - ALLOWED_HEADER_FIELDS:
        raise TokenRejected(f"forbidden header fields {sorted(set(header) - ALLOWED_HEADER_FIELDS)}")
    if header.get("alg") != ALGORITHM:
        raise TokenRejected(f"algorithm {header.get('alg')!r} not allowed")
    if header.get("typ") != typ:
        raise TokenRejected(f"token type {header.get('typ')!r} where {typ!r} is required", "wrong token type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        raise TokenRejected("missing or malformed kid")
    jwk = await keys.get(kid)
    if jwk is None:
        raise TokenRejected("unknown kid")
    try:
        key = ECKey(jwk, ALGORITHM)
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=config.audience, issuer=config.issuer,
                            options={**REQUIRED, "leeway": config.leeway})
    except ExpiredSignatureError:
        raise TokenRejected("expired", "token expired") from None
    except JWTClaimsError as exc:
        raise TokenRejected(f"claims: {exc}") from None
    except JOSEError:
        raise TokenRejected("bad signature") from None
    if claims.get("typ") != TYP_CLAIM[typ]:
        raise TokenRejected("typ claim does not match header", "wrong token type")
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float) or iat > now + config.leeway:
        raise TokenRejected("issued in the future")
    kind = claims.get("kind")
    limit = {MFA_TYP: config.max_mfa_lifetime}.get(typ) or (
        config.max_worker_lifetime if kind == "worker" else config.max_access_lifetime)
    if exp - iat > limit + config.leeway:
        raise TokenRejected("lifetime longer than this token type allows")
    if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("sub"), str):
        raise TokenRejected("jti/sub must be strings")
    return claims, kid


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    kind = claims.get("kind")
    org = claims.get("org")
    roles = claims.get("roles", [])
    projects = claims.get("proj", {})
    if kind not in ("user", "worker") or not isinstance(org, str):
        raise TokenRejected("kind/org claims missing")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenRejected("roles claim malformed")
    if not isinstance(projects, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in projects.items()):
        raise TokenRejected("proj claim malformed")
    scopes = None
    if kind == "worker":
        raw = claims.get("scopes")
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise TokenRejected("worker token without scopes")
        for name in ("vendor", "grant", "owner"):
            if not isinstance(claims.get(name), str):
                raise TokenRejected(f"worker token without {name}")
        scopes = frozenset(raw)
        roles = []  # a worker token carries no organisation role, whatever it claims
    return Principal(kind=kind, subject=claims["sub"], org_id=org, token_id=claims["jti"], roles=frozenset(roles),
                     project_roles=dict(projects), scopes=scopes, vendor_id=claims.get("vendor"),
                     grant_id=claims.get("grant"), owner_org_id=claims.get("owner"), session_id=claims.get("sid"))


async def verify_token(token: str, keys: KeySource, config: VerifierConfig,
                       revocations: RevocationList | None) -> Principal:
    """An access token (user or worker) → the verified Principal. Raises TokenRejected."""
    claims, kid = await decode_verified(token, keys, config, typ=ACCESS_TYP)
    principal = principal_from_claims(claims)
    if revocations is not None:
        version = claims.get("ver")
        refs = TokenRefs(jti=principal.token_id, kid=kid, session_id=principal.session_id,
                         grant_id=principal.grant_id,
                         user_id=principal.subject if principal.kind == "user" else None,
                         user_version=version if isinstance(version, int) else None)
        reason = await revocations.reason_revoked(refs)
        if reason:
            raise TokenRejected(reason, "token revoked")
    return principal
