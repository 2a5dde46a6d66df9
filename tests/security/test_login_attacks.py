"""Attacks on sign-in: enumeration, brute force, TOTP replay (also racing), recovery-code reuse, refresh reuse,
cross-organisation access by id."""

from __future__ import annotations

import asyncio
import statistics
import time

import pyotp

from tests.support.identity import (
    PASSWORD,
    bearer,
    build_world,
    fast_settings,
    login,
    make_org,
    make_user,
    stack,
    staged_audit_events,
)


async def totp_user(s, **kw):  # noqa: ANN001, ANN003, ANN201
    org, _ = await make_org(s.identity)
    person = await login(s.api, await make_user(s.identity, org, ["org_admin"]))
    start = (await s.api.post("/api/v1/me/totp/enrol", headers=bearer(person.access_token))).json()
    person.totp_secret = start["secret"]
    # confirm with the previous step's code so the current one is still unused for the test
    code = pyotp.TOTP(person.totp_secret).at(time.time() - 30)
    confirmed = await s.api.post("/api/v1/me/totp/confirm", headers=bearer(person.access_token), json={"code": code})
    assert confirmed.status_code == 200, confirmed.text
    person.recovery_codes = confirmed.json()["recovery_codes"]
    return org, person


async def ticket(s, person) -> str:  # noqa: ANN001
    body = (await s.api.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})).json()
    assert body["status"] == "mfa_required", body
    return body["mfa_ticket"]


async def test_login_enumeration_same_answer_and_similar_timing(settings) -> None:  # noqa: ANN001
    # a realistic argon2 cost, so that skipping the hash for unknown users would show in the timing
    tuned = fast_settings(settings, argon2_memory_kib=16_384, argon2_time_cost=2, login_max_failures=1000)
    async with stack(tuned) as s:
        org, _ = await make_org(s.identity)
        person = await make_user(s.identity, org, [])
        unknown = {"email": "nobody-here@example.test", "password": "wrong password 123"}
        wrong = {"email": person.email, "password": "wrong password 123"}
        a = await s.api.post("/api/v1/auth/login", json=unknown)
        b = await s.api.post("/api/v1/auth/login", json=wrong)
        assert a.status_code == b.status_code == 401
        strip = lambda r: {k: v for k, v in r.json().items() if k not in ("request_id",)}  # noqa: E731
        assert strip(a) == strip(b)
        assert {k: v for k, v in a.headers.items() if k in ("www-authenticate", "content-type")} == \
            {k: v for k, v in b.headers.items() if k in ("www-authenticate", "content-type")}

        async def timed(body: dict) -> float:
            started = time.perf_counter()
            await s.api.post("/api/v1/auth/login", json=body)
            return time.perf_counter() - started

        unknown_t, wrong_t = [], []
        for _ in range(12):
            unknown_t.append(await timed(unknown))
            wrong_t.append(await timed(wrong))
        mu, mw = statistics.median(unknown_t), statistics.median(wrong_t)
        assert abs(mu - mw) / max(mu, mw) < 0.35, (mu, mw)


async def test_password_brute_force_is_throttled_and_locked(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings, login_max_failures=5)) as s:
        org, _ = await make_org(s.identity)
        person = await make_user(s.identity, org, [])
        statuses = [(await s.api.post("/api/v1/auth/login", json={"email": person.email,
                                                                   "password": f"guess-{i}"})).status_code
                    for i in range(7)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        locked = await s.api.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0  # even the right password
        # an unknown e-mail locks the same way: lockout reveals nothing
        ghost = [(await s.api.post("/api/v1/auth/login", json={"email": "ghost@example.test",
                                                                "password": f"g{i}"})).status_code for i in range(6)]
        assert ghost[-1] == 429
        events = await staged_audit_events(s, org)
        assert any(e["action"] == "auth.lockout" for e in events)
        assert sum(e["action"] == "auth.login" and e["outcome"] == "failure" for e in events) >= 5


async def test_per_ip_throttle_across_accounts(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings, ip_max_failures=4, login_max_failures=100)) as s:
        statuses = [(await s.api.post("/api/v1/auth/login", json={"email": f"spray{i}@example.test",
                                                                   "password": "Winter2024!"})).status_code
                    for i in range(6)]
        assert statuses[:4] == [401] * 4 and statuses[4:] == [429, 429]


async def test_auth_endpoint_rate_limit_shared_by_replicas(settings) -> None:  # noqa: ANN001
    tuned = fast_settings(settings, auth_rate_limit_per_minute=5)
    async with stack(tuned) as first, stack(tuned) as second:  # two replicas, one Redis
        statuses = []
        for i in range(8):
            client = (first if i % 2 else second).api
            statuses.append((await client.post("/api/v1/auth/refresh", json={"refresh_token": "qrt_x"})).status_code)
        assert statuses.count(429) == 3 and statuses[:5] == [401] * 5


async def test_totp_replay_is_rejected(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        _, person = await totp_user(s)
        code = pyotp.TOTP(person.totp_secret).now()
        first = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": await ticket(s, person), "code": code})
        assert first.status_code == 200
        replay = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": await ticket(s, person),
                                                                     "code": code})
        assert replay.status_code == 401
        # an older code of the window after a newer one was used is also refused
        older = pyotp.TOTP(person.totp_secret).at(time.time() - 30)
        stale = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": await ticket(s, person),
                                                                    "code": older})
        assert stale.status_code == 401


async def test_totp_replay_racing_requests_only_one_wins(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        _, person = await totp_user(s)
        tickets = [await ticket(s, person) for _ in range(4)]
        code = pyotp.TOTP(person.totp_secret).now()
        results = await asyncio.gather(*(s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": t, "code": code})
                                         for t in tickets))
        assert sorted(r.status_code for r in results) == [200, 401, 401, 401]


async def test_totp_brute_force_is_throttled(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings, login_max_failures=5)) as s:
        org, person = await totp_user(s)
        t = await ticket(s, person)
        statuses = [(await s.api.post("/api/v1/auth/login/totp",
                                      json={"mfa_ticket": t, "code": f"{i:06d}"})).status_code for i in range(7)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        right = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": t,
                                                                  "code": pyotp.TOTP(person.totp_secret).now()})
        assert right.status_code == 429  # locked even for the right code
        assert any(e["action"] == "auth.lockout" for e in await staged_audit_events(s, org))


async def test_recovery_code_works_once(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        _, person = await totp_user(s)
        code = person.recovery_codes[3]
        first = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": await ticket(s, person),
                                                                    "recovery_code": code.lower()})
        assert first.status_code == 200, first.text
        again = await s.api.post("/api/v1/auth/login/totp", json={"mfa_ticket": await ticket(s, person),
                                                                    "recovery_code": code})
        assert again.status_code == 401
        racing = person.recovery_codes[5]
        tickets = [await ticket(s, person) for _ in range(3)]
        results = await asyncio.gather(*(s.api.post("/api/v1/auth/login/totp", json={
            "mfa_ticket": t, "recovery_code": racing}) for t in tickets))
        assert sorted(r.status_code for r in results) == [200, 401, 401]


async def test_refresh_reuse_revokes_the_whole_family(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        org, _ = await make_org(s.identity)
        person = await login(s.api, await make_user(s.identity, org, []))
        stolen = person.refresh_token
        legit = (await s.api.post("/api/v1/auth/refresh", json={"refresh_token": stolen})).json()
        newer = (await s.api.post("/api/v1/auth/refresh", json={"refresh_token": legit["refresh_token"]})).json()
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(newer["access_token"]))).status_code == 200
        reuse = await s.api.post("/api/v1/auth/refresh", json={"refresh_token": stolen})  # attacker replays
        assert reuse.status_code == 401
        assert "revoked" in reuse.json()["detail"]
        # every descendant is dead: the newest refresh token and the access token already out
        assert (await s.api.post("/api/v1/auth/refresh", json={"refresh_token": newer["refresh_token"]})
                ).status_code == 401
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(newer["access_token"]))).status_code == 401
        # another session of the same user is untouched
        other = await login(s.api, person)
        assert (await s.api.get("/api/v1/auth/whoami", headers=bearer(other.access_token))).status_code == 200
        events = await staged_audit_events(s, org)
        assert any(e["action"] == "auth.refresh" and e["reason"] == "refresh_token_reuse" for e in events)


async def test_org_admin_of_a_cannot_act_on_org_b_by_id(settings) -> None:  # noqa: ANN001
    async with stack(fast_settings(settings)) as s:
        w = await build_world(s)
        intruder = bearer(w.people["other_org_admin"].access_token)
        victim = w.people["annotator"]
        checks = [
            ("GET", f"/api/v1/users/{victim.id}", None),
            ("PATCH", f"/api/v1/users/{victim.id}", {"disabled": True}),
            ("PATCH", f"/api/v1/users/{victim.id}", {"roles": ["org_admin"]}),
            ("POST", f"/api/v1/users/{victim.id}/totp/reset", None),
            ("GET", f"/api/v1/projects/{w.project}/members", None),
            ("PUT", f"/api/v1/projects/{w.project}/members/{victim.id}", {"role": "project_manager"}),
            ("DELETE", f"/api/v1/projects/{w.project}/members/{victim.id}", None),
            ("GET", f"/api/v1/projects/{w.project}/my-access", None),
            ("GET", f"/api/v1/grants/{w.grant_id}", None),
            ("POST", f"/api/v1/grants/{w.grant_id}/revoke", None),
            ("GET", f"/api/v1/grants/{w.grant_id}/tokens", None),
            ("POST", f"/api/v1/grants/{w.grant_id}/tokens/{w.worker_token_id}/revoke", None),
        ]
        for method, path, body in checks:
            response = await s.api.request(method, path, headers=intruder, json=body)
            assert response.status_code == 404, (method, path, response.status_code, response.text)
        # a grant to org B's own project of org A's: refused as not found
        grant = await s.api.post("/api/v1/grants", headers=intruder, json={
            "vendor": w.vendor_slug, "project_ids": [str(w.project)], "scopes": ["tasks:lease"]})
        assert grant.status_code == 404
        # nothing changed
        me = await s.api.get("/api/v1/auth/whoami", headers=bearer(w.worker_token))
        assert me.status_code == 200
        listing = await s.api.get("/api/v1/users", headers=intruder)
        assert str(victim.id) not in listing.text
