"""Identity end to end over HTTP: login (+TOTP), refresh rotation, grants, worker tokens, admin actions."""

from __future__ import annotations

import time
import uuid

import pyotp
import sqlalchemy as sa

from services.api.identity.models import RecoveryCode, User
from tests.support.identity import (
    PASSWORD,
    bearer,
    build_world,
    fast_settings,
    login,
    make_org,
    make_project,
    make_user,
    stack,
    staged_audit_events,
)


async def audit_actions(s, org_id=None) -> list[dict]:  # noqa: ANN001
    """Audit events this stack staged in the api outbox (whether or not the relay moved them yet)."""
    return await staged_audit_events(s, org_id)


async def test_password_login_whoami_refresh_logout(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity)
        admin = await login(s.api, await make_user(s.identity, org, ["org_admin"]))
        me = await s.api.get("/api/v1/auth/whoami", headers=bearer(admin.access_token))
        assert me.status_code == 200 and me.json()["roles"] == ["org_admin"] and me.json()["kind"] == "user"
        refreshed = await s.api.post("/api/v1/auth/refresh", json={"refresh_token": admin.refresh_token})
        assert refreshed.status_code == 200
        new = refreshed.json()
        assert new["refresh_token"] != admin.refresh_token
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(new["access_token"]))).status_code == 200
        out = await s.api.post("/api/v1/auth/logout", headers=bearer(new["access_token"]))
        assert out.status_code == 204
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(new["access_token"]))).status_code == 401
        again = await s.api.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert again.status_code == 401
        actions = {(a["action"], a["outcome"]) for a in await audit_actions(s, org)}
        assert {("auth.login", "success"), ("auth.refresh", "success"), ("auth.logout", "success")} <= actions


async def enrol_totp(s, person) -> None:  # noqa: ANN001
    start = await s.api.post("/api/v1/me/totp/enrol", headers=bearer(person.access_token))
    assert start.status_code == 200, start.text
    body = start.json()
    assert body["provisioning_uri"].startswith("otpauth://totp/")
    assert body["qr_svg"].startswith("data:image/svg+xml;base64,") and body["qr_png"].startswith("data:image/png")
    person.totp_secret = body["secret"]
    wrong = await s.api.post("/api/v1/me/totp/confirm", headers=bearer(person.access_token), json={"code": "000000"})
    assert wrong.status_code == 401
    confirm = await s.api.post("/api/v1/me/totp/confirm", headers=bearer(person.access_token),
                               json={"code": pyotp.TOTP(person.totp_secret).now()})
    assert confirm.status_code == 200, confirm.text
    person.recovery_codes = confirm.json()["recovery_codes"]


async def test_totp_enrolment_then_two_step_login_and_seed_encrypted(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity)
        person = await login(s.api, await make_user(s.identity, org, ["org_admin"]))
        await enrol_totp(s, person)
        assert len(person.recovery_codes) == 10 and len(set(person.recovery_codes)) == 10
        async with s.api_app.state.ctx.session_factory() as session:
            user = await session.get(User, person.id)
            assert person.totp_secret not in (user.totp_secret_sealed or "")
            assert user.totp_secret_sealed.startswith("qs1.")
            hashes = (await session.scalars(sa.select(RecoveryCode.code_hash)
                                            .where(RecoveryCode.user_id == person.id))).all()
            assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
        step1 = await s.api.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})
        assert step1.status_code == 200 and step1.json()["status"] == "mfa_required"
        assert "access_token" not in step1.json()
        # the ticket is not an access token
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(step1.json()["mfa_ticket"]))).status_code == 401
        step2 = await s.api.post("/api/v1/auth/login/totp", json={
            "mfa_ticket": step1.json()["mfa_ticket"], "code": pyotp.TOTP(person.totp_secret).at(time.time() + 30)})
        assert step2.status_code == 200, step2.text
        assert step2.json()["access_token"]


async def test_org_requiring_totp_forces_enrolment_at_login(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity, require_totp=True)
        person = await make_user(s.identity, org, ["org_admin"])
        step1 = await s.api.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})
        assert step1.json()["status"] == "mfa_enrolment_required"
        ticket = step1.json()["mfa_ticket"]
        enrol = await s.api.post("/api/v1/auth/login/totp/enrol", json={"mfa_ticket": ticket})
        assert enrol.status_code == 200
        secret = enrol.json()["secret"]
        done = await s.api.post("/api/v1/auth/login/totp/confirm",
                                json={"mfa_ticket": ticket, "code": pyotp.TOTP(secret).now()})
        assert done.status_code == 200, done.text
        assert len(done.json()["recovery_codes"]) == 10
        again = await s.api.post("/api/v1/auth/login/totp/confirm",
                                 json={"mfa_ticket": ticket, "code": pyotp.TOTP(secret).now()})
        assert again.status_code == 401  # a ticket is good for one sign-in


async def test_admin_reset_totp_forces_reenrolment_and_ends_sessions(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity, require_totp=True)
        admin = await make_user(s.identity, org, ["org_admin"])
        user = await make_user(s.identity, org, [])
        # no TOTP yet on either: enrol both through the forced flow
        for person in (admin, user):
            step1 = (await s.api.post("/api/v1/auth/login", json={"email": person.email,
                                                                  "password": PASSWORD})).json()
            secret = (await s.api.post("/api/v1/auth/login/totp/enrol",
                                       json={"mfa_ticket": step1["mfa_ticket"]})).json()["secret"]
            person.totp_secret = secret
            tokens = (await s.api.post("/api/v1/auth/login/totp/confirm", json={
                "mfa_ticket": step1["mfa_ticket"], "code": pyotp.TOTP(secret).now()})).json()
            person.access_token = tokens["access_token"]
        reset = await s.api.post(f"/api/v1/users/{user.id}/totp/reset", headers=bearer(admin.access_token))
        assert reset.status_code == 200 and reset.json()["totp_active"] is False
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(user.access_token))).status_code == 401
        step1 = (await s.api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})).json()
        assert step1["status"] == "mfa_enrolment_required"
        actions = {(a["action"], a["outcome"]) for a in await audit_actions(s, org)}
        assert ("totp.reset", "success") in actions


async def test_grant_worker_token_lifecycle(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        w = await build_world(s)
        worker = bearer(w.worker_token)
        me = (await s.api.get("/api/v1/auth/whoami", headers=worker)).json()
        assert me["kind"] == "worker" and me["grant_id"] == str(w.grant_id) and me["owner_org_id"] == str(w.org_a)
        assert set(me["scopes"]) == {"tasks:lease", "annotations:write", "media:read"}
        access = await s.api.get(f"/api/v1/projects/{w.project}/my-access", headers=worker)
        assert access.status_code == 200 and access.json()["can_annotate"] is True
        assert access.json()["can_manage"] is False
        listed = await s.api.get(f"/api/v1/grants/{w.grant_id}/tokens",
                                 headers=bearer(w.people["vendor_manager"].access_token))
        assert listed.status_code == 200
        assert [t["name"] for t in listed.json()] == ["laptop-1"] and "token" not in listed.json()[0]
        # the data owner sees the grant too
        seen = await s.api.get(f"/api/v1/grants/{w.grant_id}", headers=bearer(w.people["org_admin"].access_token))
        assert seen.status_code == 200 and seen.json()["project_ids"] == [str(w.project)]
        actions = {a["action"] for a in await audit_actions(s, w.vendor)}
        assert "worker_token.mint" in actions


async def test_minting_beyond_the_grant_is_refused(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        w = await build_world(s, scopes=("tasks:lease",))
        manager = bearer(w.people["vendor_manager"].access_token)
        base = {"worker_id": str(w.people["vendor_worker"].id), "name": "x"}
        wider_scope = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager,
                                       json={**base, "scopes": ["tasks:lease", "media:read"]})
        assert wider_scope.status_code == 403
        other_project = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager,
                                         json={**base, "project_ids": [str(w.other_project)]})
        assert other_project.status_code == 403
        higher_role = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager,
                                       json={**base, "role": "reviewer"})
        assert higher_role.status_code == 403
        foreign_worker = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens", headers=manager,
                                          json={**base, "worker_id": str(w.people["annotator"].id)})
        assert foreign_worker.status_code == 404
        # the data owner cannot mint for the vendor, and a vendor manager cannot issue grants
        owner = await s.api.post(f"/api/v1/grants/{w.grant_id}/tokens",
                                 headers=bearer(w.people["org_admin"].access_token), json=base)
        assert owner.status_code == 403
        grant = await s.api.post("/api/v1/grants", headers=manager, json={
            "vendor": w.vendor_slug, "project_ids": [str(w.project)], "scopes": ["tasks:lease"]})
        assert grant.status_code == 403


async def test_project_membership_changes_roles_in_new_tokens(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity)
        project = await make_project(s.identity, org)
        admin = await login(s.api, await make_user(s.identity, org, ["org_admin"]))
        user = await login(s.api, await make_user(s.identity, org, []))
        put = await s.api.put(f"/api/v1/projects/{project}/members/{user.id}", headers=bearer(admin.access_token),
                              json={"role": "reviewer"})
        assert put.status_code == 200 and put.json()["role"] == "reviewer"
        # the old token carried no project role: it is cut off, a refresh brings the new role
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(user.access_token))).status_code == 401
        fresh = (await s.api.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})).status_code
        assert fresh == 401  # membership change ended the sessions; sign in again
        await login(s.api, user)
        me = (await s.api.get("/api/v1/auth/whoami", headers=bearer(user.access_token))).json()
        assert me["project_roles"] == {str(project): "reviewer"}
        members = await s.api.get(f"/api/v1/projects/{project}/members", headers=bearer(admin.access_token))
        assert [m["role"] for m in members.json()] == ["reviewer"]


async def test_cli_create_admin_then_login(settings) -> None:  # noqa: ANN001
    from services.api.identity.cli import create_admin

    fast = fast_settings(settings)
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    email = f"{slug}@example.test"
    result = await create_admin(fast, org_slug=slug, org_name="CLI Org", org_kind="data_owner", email=email,
                                name="Ada", password=PASSWORD, roles=["org_admin"])
    assert result["org"] == slug
    async with stack(fast) as s:
        response = await s.api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200 and response.json()["status"] == "ok"
        org = await s.api.get("/api/v1/orgs/current", headers=bearer(response.json()["access_token"]))
        assert org.json()["slug"] == slug


async def test_audit_events_carry_no_secrets(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        w = await build_world(s)
        bad = await s.api.post("/api/v1/auth/login", json={"email": w.people["annotator"].email,
                                                            "password": "hunter2-wrong-password"})
        assert bad.status_code == 401
        events = await audit_actions(s)
        text = str(events)
        assert PASSWORD not in text and "hunter2-wrong-password" not in text and w.worker_token not in text
        for person in w.people.values():
            assert not person.refresh_token or person.refresh_token not in text
        failure = [e for e in events if e["action"] == "auth.login" and e["outcome"] == "failure"
                   and e["actor_id"] == str(w.people["annotator"].id)]
        assert failure and failure[-1]["ip"] and failure[-1]["request_id"]


async def test_cli_signing_keys_rotate_list_retire(settings) -> None:  # noqa: ANN001
    from services.api.identity.cli import signing_keys

    fast = fast_settings(settings)
    first = await signing_keys(fast, "rotate", None)
    second = await signing_keys(fast, "rotate", None)
    listed = {k["kid"]: k["status"] for k in await signing_keys(fast, "list", None)}
    assert listed[first["kid"]] == listed[second["kid"]] == "active"
    after = {k["kid"]: k["status"] for k in await signing_keys(fast, "retire", first["kid"])}
    assert after[first["kid"]] == "retired" and after[second["kid"]] == "active"
    async with stack(fast) as s:
        published = {k["kid"] for k in (await s.api.get("/api/v1/auth/jwks")).json()["keys"]}
        assert second["kid"] in published and first["kid"] not in published


async def test_text_with_nul_is_a_422_naming_the_field(settings) -> None:  # noqa: ANN001
    """PostgreSQL cannot store NUL (U+0000); these reached the database and answered 500 (found by
    tests/security/test_api_fuzz.py)."""
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity)
        admin = await login(s.api, await make_user(s.identity, org, ["org_admin"]))
        user = await make_user(s.identity, org, [])
        cases = [
            ("POST", "/api/v1/auth/login", {"email": "a\x00@example.test", "password": PASSWORD}, "/body/email"),
            ("PATCH", "/api/v1/orgs/current", {"name": "Acme\x00"}, "/body/name"),
            ("POST", "/api/v1/users", {"email": "new\x00@example.test"}, "/body/email"),
            ("POST", "/api/v1/users", {"email": "new@example.test", "name": "New\x00"}, "/body/name"),
            ("PATCH", f"/api/v1/users/{user.id}", {"name": "Renamed\x00"}, "/body/name"),
            ("POST", "/api/v1/grants", {"vendor": "v\x00", "project_ids": [str(uuid.uuid4())],
                                        "scopes": ["tasks:lease"]}, "/body/vendor"),
        ]
        for method, path, body, pointer in cases:
            r = await s.api.request(method, path, json=body, headers=bearer(admin.access_token))
            assert r.status_code == 422, (method, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert [e["pointer"] for e in r.json()["errors"]] == [pointer], r.text
            assert "NUL (U+0000)" in r.json()["errors"][0]["detail"]
        org_now = await s.api.get("/api/v1/orgs/current", headers=bearer(admin.access_token))
        assert "\x00" not in org_now.json()["name"]
