"""FastAPI dependencies: who is calling, and each route's declared access policy.

Every route declares its policy with exactly one of

    principal: Principal = require("projects.view", roles={Role.ORG_ADMIN}, project_roles={...},
                                   project_param="project_id", workers=True, scopes={"media:read"})
    dependencies=[public("why this route needs no token")]

The declaration is both the gate (token verified, caller kind, organisation/project role, token scopes —
decided from the verified claims alone, so it answers the same whether or not the resource exists) and a
machine-readable statement the authorisation-matrix test reads from the route table. A route with no
declaration fails that test. Resource-level rules (the project belongs to the caller's organisation, ...)
are the domain policy modules' job, behind the gate (404 where existence would leak).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from shared.auth.keys import KeySource, key_source_for
from shared.auth.principal import Principal
from shared.auth.revocation import RevocationList
from shared.auth.tokens import TokenRejected, VerifierConfig, verify_token
from shared.errors import Forbidden, Unauthorized

log = logging.getLogger("quorum.auth")

TokenCheck = Callable[[Principal], Awaitable[str | None]]  # extra per-service check: reason to reject or None


@dataclass(frozen=True)
class RoutePolicy:
    name: str
    public: bool = False
    reason: str = ""
    roles: frozenset[str] | Literal["any"] = frozenset()  # organisation roles admitted ("any": every user)
    project_roles: frozenset[str] = frozenset()  # roles on the project named by `project_param`
    project_param: str | None = None
    workers: bool = False  # vendor worker tokens admitted (within their projects and scopes)
    scopes: frozenset[str] = frozenset()  # a worker token must carry all of them
    resource_params: tuple[str, ...] = field(default=())  # path params naming org-owned resources

    def admits(self, principal: Principal, path_params: dict[str, Any]) -> str | None:
        """None if the gate lets `principal` through, else why not."""
        project = str(path_params.get(self.project_param, "")) if self.project_param else None
        if principal.kind == "worker":
            if not self.workers:
                return "vendor worker tokens cannot use this route"
            missing = sorted(self.scopes - (principal.scopes or frozenset()))
            if missing:
                return f"token lacks scope {', '.join(missing)}"
            if project is not None:
                role = principal.role_in(project)
                if role is None:
                    return "token is not valid for this project"
                if self.project_roles and role not in self.project_roles:
                    return f"role {role!r} on this project is not enough"
            return None
        if self.roles == "any" or principal.roles & self.roles:
            return None
        if project is not None and principal.role_in(project) in self.project_roles:
            return None
        return "your role does not allow this"


def _tokenset(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(str(v) for v in (values or ()))


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send an access token: 'Authorization: Bearer <token>'")
    return token.strip()


@dataclass
class TokenVerifier:
    keys: KeySource
    config: VerifierConfig
    revocations: RevocationList
    extra_check: TokenCheck | None = None

    async def verify(self, token: str) -> Principal:
        principal = await verify_token(token, self.keys, self.config, self.revocations)
        if self.extra_check is not None:
            reason = await self.extra_check(principal)
            if reason:
                raise TokenRejected(reason, "token revoked")
        return principal


def token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier, built on first use from its context (a service may preset `key_source`)."""
    ctx = request.app.state.ctx
    verifier = ctx.extras.get("token_verifier")
    if verifier is None:
        keys = ctx.extras.get("key_source") or key_source_for(ctx.settings)
        ctx.extras["key_source"] = keys
        verifier = TokenVerifier(keys=keys, config=VerifierConfig.from_settings(ctx.settings),
                                 revocations=RevocationList(ctx.redis, ctx.settings.stream_prefix),
                                 extra_check=ctx.extras.get("token_check"))
        ctx.extras["token_verifier"] = verifier
    return verifier


async def current_principal(request: Request) -> Principal:
    """The verified caller (401 otherwise). Not a policy: pair it with `require(...)` on the route."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    try:
        principal = await token_verifier(request).verify(token)
    except TokenRejected as exc:
        log.info("bearer token rejected", extra={"reason": exc.reason, "path": request.url.path})
        raise Unauthorized(exc.public, type="invalid-token") from None
    request.state.principal = principal
    return principal


def require(name: str, *, roles: Iterable[str] | Literal["any"] = (), project_roles: Iterable[str] = (),
            project_param: str | None = None, workers: bool = False, scopes: Iterable[str] = (),
            resource_params: Iterable[str] = ()) -> Any:
    """Declare and enforce a route's access policy; the dependency's value is the verified Principal.

    A `project_param` or `resource_params` entry names a path parameter holding the id of something owned
    by an organisation: the matrix test expects 404 for a caller of another organisation there.
    """
    policy = RoutePolicy(name=name, roles="any" if roles == "any" else _tokenset(roles),  # type: ignore[arg-type]
                         project_roles=_tokenset(project_roles), project_param=project_param, workers=workers,
                         scopes=_tokenset(scopes),
                         resource_params=tuple(resource_params) + ((project_param,) if project_param else ()))

    async def gate(request: Request) -> Principal:
        principal = await current_principal(request)
        if policy.project_param is not None:
            _require_uuid(request.path_params.get(policy.project_param))
        denial = policy.admits(principal, request.path_params)
        if denial:
            raise Forbidden(denial)
        return principal

    gate.__route_policy__ = policy  # type: ignore[attr-defined]
    gate.__name__ = f"policy_{name.replace('.', '_').replace(':', '_')}"
    return Depends(gate)


def require_scope(*scopes: str, name: str | None = None, roles: Iterable[str] | Literal["any"] = (),
                  project_param: str | None = None, project_roles: Iterable[str] = ()) -> Any:
    """A route for vendor worker tokens carrying `scopes` (and users with `roles`/`project_roles`)."""
    return require(name or "scope:" + "+".join(scopes), roles=roles, project_roles=project_roles,
                   project_param=project_param, workers=True, scopes=scopes)


def public(reason: str) -> Any:
    """Declare a route needs no token (login, JWKS, health). `reason` is for the reader and the matrix."""
    policy = RoutePolicy(name="public", public=True, reason=reason)

    async def no_authentication() -> None:
        return None

    no_authentication.__route_policy__ = policy  # type: ignore[attr-defined]
    return Depends(no_authentication)


def _require_uuid(value: Any) -> None:
    from shared.errors import NotFound

    try:
        uuid.UUID(str(value))
    except ValueError:
        raise NotFound("no such resource") from None


@dataclass(frozen=True)
class EffectiveRoute:
    """One served API route as the app really mounts it (prefixes and router-level dependencies applied)."""

    path: str
    methods: frozenset[str]
    name: str
    dependant: Any


def iter_api_routes(app: Any) -> list[EffectiveRoute]:
    """Every API route of an app, whatever way its routers were included."""
    try:
        from fastapi.routing import _iter_routes_with_context  # FastAPI ≥ 0.16x: lazily included routers
    except ImportError:  # older FastAPI: app.routes holds the APIRoutes themselves
        def _iter_routes_with_context(routes):  # noqa: ANN001, ANN202
            return ((r, None) for r in routes)
    found = []
    for original, context in _iter_routes_with_context(app.routes):
        source = context if context is not None else original
        dependant = getattr(source, "dependant", None)
        if dependant is None and not isinstance(original, APIRoute):
            continue
        found.append(EffectiveRoute(path=source.path, methods=frozenset(source.methods or ()),
                                    name=getattr(source, "name", ""), dependant=dependant))
    return found


def route_policies(route: Any) -> list[RoutePolicy]:
    """Every policy declared anywhere in a route's dependency tree (an APIRoute or an EffectiveRoute)."""
    found: list[RoutePolicy] = []
    seen: set[int] = set()

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            policy = getattr(sub.call, "__route_policy__", None)
            if policy is not None and id(sub.call) not in seen:
                seen.add(id(sub.call))
                found.append(policy)
            walk(sub)

    walk(route.dependant)
    return found
