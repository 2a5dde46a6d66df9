"""The authorisation matrix: every route of api, worker and consensus × every kind of caller.

Generated from the route table: each route's declared policy (`shared.auth.require(...)` / `public(...)`)
is read from its dependency tree; a route that declares none fails here. Expected outcomes are derived
from the declaration by this test's own rules (not by the enforcement code):

- public routes (no bearer token needed; some take another credential, e.g. a signed link): never a 5xx;
- anonymous: 401;
- a caller the declaration does not admit (kind, organisation role, project role, worker scopes): 403;
- an admitted caller on a resource its organisation cannot see (another org's project/user/grant): 404
  (or 422 for the test's empty body: validation happens before the lookup and reveals nothing);
- otherwise admitted: anything but 401/403, and never a 5xx.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI

from shared.auth.dependencies import iter_api_routes, route_policies
from tests.support.identity import bearer, build_world, fast_settings, login, make_user, stack

SERVICES = ("api", "worker", "consensus")
WORKER_SCOPES = frozenset({"tasks:lease", "annotations:write", "media:read"})


@dataclass(frozen=True)
class Caller:
    name: str
    kind: str  # anonymous | user | worker
    org: str  # A (data owner), B (another data owner), V (the vendor)
    roles: frozenset[str] = frozenset()
    project_role: str | None = None  # role on project P (org A)


CALLERS = [
    Caller("anonymous", "anonymous", "-"),
    Caller("org_admin", "user", "A", frozenset({"org_admin"})),
    Caller("project_manager", "user", "A", project_role="project_manager"),
    Caller("reviewer", "user", "A", project_role="reviewer"),
    Caller("annotator", "user", "A", project_role="annotator"),
    Caller("auditor", "user", "A", frozenset({"auditor"})),
    Caller("vendor_manager", "user", "V", frozenset({"vendor_manager"})),
    Caller("vendor_worker", "worker", "V", project_role="annotator"),
    Caller("other_org_admin", "user", "B", frozenset({"org_admin"})),
]

# Which organisations can see the resource each known path parameter is filled with.
VISIBLE_TO = {"project_id": {"A"}, "user_id": {"A"}, "grant_id": {"A", "V"}, "token_id": {"A", "V"}}


def undeclared(app: FastAPI) -> list[str]:
    return [f"{sorted(r.methods)} {r.path}" for r in iter_api_routes(app) if not route_policies(r)]


def expected(route, caller: Caller) -> str:  # noqa: ANN001
    """'public', '401', '403', '404' or 'allowed'."""
    policies = route_policies(route)
    if any(p.public for p in policies):
        return "public"
    if caller.kind == "anonymous":
        return "401"
    outcomes = [_expected_one(p, caller) for p in policies]
    for outcome in ("403", "404"):
        if outcome in outcomes:
            return outcome
    return "allowed"


def _expected_one(policy, caller: Caller) -> str:  # noqa: ANN001
    if caller.kind == "worker":
        if not policy.workers or not policy.scopes <= WORKER_SCOPES:
            return "403"
        if policy.project_param and policy.project_roles and caller.project_role not in policy.project_roles:
            return "403"
        params = [p for p in policy.resource_params if p != policy.project_param]
    else:
        admitted = (policy.roles == "any" or bool(caller.roles & policy.roles)
                    or (policy.project_param is not None and caller.project_role in policy.project_roles))
        if not admitted:
            return "403"
        params = list(policy.resource_params)
    for param in params:
        if caller.org not in VISIBLE_TO.get(param, set()):
            return "404"
    return "allowed"


def test_a_route_without_a_policy_is_caught() -> None:
    from shared.auth import public, require

    router = APIRouter()

    @router.get("/declared", dependencies=[public("test")])
    async def declared() -> dict:
        return {}

    @router.get("/guarded")
    async def guarded(principal=require("x", roles={"org_admin"})) -> dict:  # noqa: ANN001, B008
        return {}

    @router.get("/forgotten")
    async def forgotten() -> dict:
        return {}

    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    assert undeclared(app) == ["['GET'] /api/v1/forgotten"]


def test_every_route_of_every_service_declares_a_policy(settings) -> None:  # noqa: ANN001
    missing = []
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.app").create_app(settings)
        missing += [f"{service}: {r}" for r in undeclared(app)]
    assert not missing, "routes without a declared policy (add require(...) or public(...)):\n" + "\n".join(missing)


async def test_authorisation_matrix(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings), services=SERVICES) as s:
        w = await build_world(s)
        # throwaway targets, so that state-changing routes cannot disturb the callers themselves
        target_user = await make_user(s.identity, w.org_a, [])
        spare = await s.api.post("/api/v1/grants", headers=bearer(w.people["org_admin"].access_token), json={
            "vendor": w.vendor_slug, "project_ids": [str(w.project)], "scopes": ["tasks:lease"]})
        spare_grant = spare.json()["id"]
        spare_token = (await s.api.post(f"/api/v1/grants/{spare_grant}/tokens",
                                        headers=bearer(w.people["vendor_manager"].access_token),
                                        json={"worker_id": str(w.people["vendor_worker"].id), "name": "spare"})
                       ).json()["id"]
        values = {"project_id": str(w.project), "user_id": str(target_user.id), "grant_id": spare_grant,
                  "token_id": spare_token}
        tokens = {name: p.access_token for name, p in w.people.items() if p.access_token}
        tokens["vendor_worker"] = w.worker_token

        routes = []
        for service in SERVICES:
            for route in iter_api_routes(s.apps[service]):
                for method in sorted(route.methods - {"HEAD"}):
                    routes.append((service, method, route))
        routes.sort(key=lambda r: r[2].path.endswith("/auth/logout"))  # logging out ends the caller's session
        assert len(routes) > 30

        failures, checked = [], 0
        for service, method, route in routes:
            path = route.path
            for param in [seg[1:-1] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]:
                path = path.replace("{" + param + "}", values.get(param, str(uuid.uuid4())))
            for caller in CALLERS:
                want = expected(route, caller)
                headers = bearer(tokens.get(caller.name)) if caller.kind != "anonymous" else {}
                body = {} if method in ("POST", "PUT", "PATCH") else None
                client = {"api": s.api, "worker": s.worker, "consensus": s.consensus}[service]
                try:
                    response = await client.request(method, path, headers=headers, json=body)
                except Exception as exc:  # an unhandled error is a 500 the client would have seen
                    failures.append(f"{service:9} {method:6} {route.path:55} {caller.name:16} "
                                    f"expected {want:7} raised {type(exc).__name__}: {exc}"[:300])
                    continue
                got = response.status_code
                checked += 1
                ok = {"public": got < 500, "401": got == 401, "403": got == 403,
                      "404": got in (404, 422), "allowed": got not in (401, 403) and got < 500}[want]
                if not ok:
                    failures.append(f"{service:9} {method:6} {route.path:55} {caller.name:16} "
                                    f"expected {want:7} got {got} {response.text[:120]}")
        assert not failures, f"{len(failures)} of {checked} cells differ:\n" + "\n".join(failures)
        # the callers' sessions were real all along (a matrix of 401s would prove nothing)
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(w.worker_token))).status_code == 200
        await login(s.api, w.people["annotator"])
