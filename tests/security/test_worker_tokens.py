"""Vendor worker tokens in every service: within the grant only, revocable at once, grant revocation cuts all;
signing-key rotation keeps old tokens verifying until the key is retired."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.identity.signing import create_signing_key, retire_signing_key
from services.api.identity.startup import resync_revocations
from shared.app import PREFIXES
from shared.auth import Principal, require_scope
from tests.support.identity import bearer, build_world, fast_settings, login, stack


def probe_router() -> APIRouter:
    """What worker/consensus routes will look like: gated by scope and project, verified locally."""
    router = APIRouter()

    @router.get("/probe/projects/{project_id}/lease")
    async def lease(project_id: str, principal: Principal = require_scope(
            "tasks:lease", project_param="project_id", project_roles={"annotator", "reviewer"})) -> dict:
        return {"subject": principal.subject, "project": project_id}

    @router.get("/probe/projects/{project_id}/review")
    async def review(project_id: str, principal: Principal = require_scope(
            "reviews:write", project_param="project_id", project_roles={"reviewer"})) -> dict:
        return {"subject": principal.subject}

    return router


class Everywhere:
    def __init__(self, s) -> None:  # noqa: ANN001
        self.s = s

    async def statuses(self, token: str, project) -> dict[str, int]:  # noqa: ANN001
        out = {"api": (await self.s.api.get(f"/api/v1/projects/{project}/my-access", headers=bearer(token))
                       ).status_code}
        for name, client in (("worker", self.s.worker), ("consensus", self.s.consensus)):
            out[name] = (await client.get(f"{PREFIXES[name]}/probe/projects/{project}/lease",
                                          headers=bearer(token))).status_code
        return out


def with_probes(s) -> None:  # noqa: ANN001
    for name in ("worker", "consensus"):
        s.apps[name].include_router(probe_router(), prefix=PREFIXES[name])


async def test_worker_token_inside_and_outside_its_grant(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings), services=("api", "worker", "consensus")) as s:
        with_probes(s)
        w = await build_world(s)
        everywhere = Everywhere(s)
        assert await everywhere.statuses(w.worker_token, w.project) == {"api": 200, "worker": 200, "consensus": 200}
        # a project of the same data owner outside the grant, and another organisation's project
        assert await everywhere.statuses(w.worker_token, w.other_project) == {"api": 403, "worker": 403,
                                                                              "consensus": 403}
        assert await everywhere.statuses(w.worker_token, w.project_b) == {"api": 403, "worker": 403,
                                                                          "consensus": 403}
        # a scope the token lacks
        lacks = await s.worker.get(f"{PREFIXES['worker']}/probe/projects/{w.project}/review",
                                   headers=bearer(w.worker_token))
        assert lacks.status_code == 403 and "reviews:write" in lacks.json()["detail"]
        # worker tokens cannot use user-only routes
        for path in ("/api/v1/users", "/api/v1/grants", "/api/v1/orgs/current", f"/api/v1/projects/{w.project}/members"):
            assert (await s.api.get(path, headers=bearer(w.worker_token))).status_code == 403


async def test_revoked_worker_token_is_cut_off_everywhere_at_once(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings), services=("api", "worker", "consensus")) as s:
        with_probes(s)
        w = await build_world(s)
        manager = bearer(w.people["vendor_manager"].access_token)
        second = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager, json={
            "worker_id": str(w.people["vendor_worker"].id), "name": "laptop-2"})
        other_token = second.json()["token"]
        everywhere = Everywhere(s)
        assert set((await everywhere.statuses(w.worker_token, w.project)).values()) == {200}
        revoked = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens/{w.worker_token_id}/revoke", headers=manager)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert await everywhere.statuses(w.worker_token, w.project) == {"api": 401, "worker": 401, "consensus": 401}
        assert set((await everywhere.statuses(other_token, w.project)).values()) == {200}
        # the markers are a cache of the database: lose them, the api still refuses; a resync restores them
        redis = s.api_app.state.ctx.redis
        prefix = s.api_app.state.ctx.settings.stream_prefix
        keys = [k async for k in redis.scan_iter(f"{prefix}:auth:revoked:*")]
        await redis.delete(*keys)
        assert (await s.api.get(f"/api/v1/projects/{w.project}/my-access", headers=bearer(w.worker_token))
                ).status_code == 401
        await resync_revocations(s.identity)
        assert await everywhere.statuses(w.worker_token, w.project) == {"api": 401, "worker": 401, "consensus": 401}


async def test_revoking_the_grant_cuts_off_every_token_under_it(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings), services=("api", "worker", "consensus")) as s:
        with_probes(s)
        w = await build_world(s)
        manager = bearer(w.people["vendor_manager"].access_token)
        second = (await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager, json={
            "worker_id": str(w.people["vendor_worker"].id), "name": "laptop-2"})).json()["token"]
        everywhere = Everywhere(s)
        revoke = await s.api.post(f"/api/v1/grants/{w.grant_id}/revoke",
                                  headers=bearer(w.people["org_admin"].access_token))
        assert revoke.status_code == 200 and revoke.json()["revoked_at"]
        for token in (w.worker_token, second):
            assert await everywhere.statuses(token, w.project) == {"api": 401, "worker": 401, "consensus": 401}
        mint = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager, json={
            "worker_id": str(w.people["vendor_worker"].id), "name": "after"})
        assert mint.status_code == 409
        # the vendor cannot revoke the grant, only the data owner can
        assert (await s.api.post(f"/api/v1/grants/{w.grant_id}/revoke", headers=manager)).status_code == 403


async def test_signing_key_rotation_and_retirement(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings, signing_key_cache_seconds=0.0),
                     services=("api", "worker", "consensus")) as s:
        with_probes(s)
        w = await build_world(s)
        user = w.people["annotator"]
        old_kid = (await s.identity.keys.signer())[0]
        async with s.api_app.state.ctx.session_factory() as session, session.begin():
            new_kid = await create_signing_key(session, s.identity.keyring)
        fresh = await login(s.api, type(user)(**{**user.__dict__}))
        from jose import jwt

        assert jwt.get_unverified_header(fresh.access_token)["kid"] == new_kid
        assert jwt.get_unverified_header(user.access_token)["kid"] == old_kid
        jwks = (await s.api.get("/api/v1/auth/jwks")).json()
        assert {old_kid, new_kid} <= {k["kid"] for k in jwks["keys"]}
        assert all("d" not in k for k in jwks["keys"])  # never a private part
        assert (await s.api.get("/.well-known/jwks.json")).json() == jwks
        everywhere = Everywhere(s)
        for token in (user.access_token, fresh.access_token):
            assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(token))).status_code == 200
        assert set((await everywhere.statuses(w.worker_token, w.project)).values()) == {200}  # old-key worker token
        async with s.api_app.state.ctx.session_factory() as session, session.begin():
            assert await retire_signing_key(session, old_kid)
        await s.identity.revocations.retire_key(old_kid)
        s.identity.keys.invalidate()
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(user.access_token))).status_code == 401
        assert await everywhere.statuses(w.worker_token, w.project) == {"api": 401, "worker": 401, "consensus": 401}
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(fresh.access_token))).status_code == 200
        assert old_kid not in {k["kid"] for k in (await s.api.get("/api/v1/auth/jwks")).json()["keys"]}
