"""Who may read media (role, project, vendor scope), signed links, and the audit trail of both."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

TEXT = b"annotate me, please\n" * 20


async def _media(env) -> tuple[str, str]:  # noqa: ANN001
    created = await env.upload(TEXT, "task.txt", "text/plain")
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["url"]


async def test_read_policy_by_role_project_and_scope(env) -> None:  # noqa: ANN001
    media_id, url = await _media(env)
    p = env.project_id
    allowed = {
        "annotator of the project": dict(proj={p: "annotator"}),
        "reviewer of the project": dict(proj={p: "reviewer"}),
        "manager of the project": dict(proj={p: "project_manager"}),
        "org project manager": dict(roles=("project_manager",)),
        "org admin": dict(roles=("org_admin",)),
        "vendor worker with media:read": dict(kind="worker", proj={p: "annotator"},
                                              scopes=("media:read", "tasks:read")),
    }
    for label, claims in allowed.items():
        response = await env.client.get(url, headers=await env.headers(**claims))
        assert response.status_code == 200, (label, response.text)
        assert response.content == TEXT

    denied = {
        "annotator of another project": (dict(proj={env.other_project_id: "annotator"}), 403),
        "auditor": (dict(roles=("auditor",)), 403),
        "vendor manager": (dict(roles=("vendor_manager",)), 403),
        "vendor worker without media:read": (dict(kind="worker", proj={p: "annotator"},
                                                  scopes=("tasks:read",)), 403),
        "vendor worker on another project": (dict(kind="worker",
                                                  proj={env.other_project_id: "annotator"},
                                                  scopes=("media:read",)), 403),
        "worker of a vendor the project no longer allows": (dict(kind="worker", proj={p: "annotator"},
                                                                 scopes=("media:read",), vendor_allowed=False),
                                                            403),
        "admin of another organisation": (dict(roles=("org_admin",), org=env.other_org_id), 404),
        "worker granted by another organisation": (dict(kind="worker", proj={p: "annotator"},
                                                        scopes=("media:read",), owner=env.other_org_id), 404),
    }
    for label, (claims, status) in denied.items():
        response = await env.client.get(url, headers=await env.headers(**claims))
        assert response.status_code == status, (label, response.text)
        assert TEXT not in response.content

    assert (await env.client.get(url)).status_code == 401
    assert (await env.client.get(url, headers={"Authorization": "Bearer not-a-jwt"})).status_code == 401

    successes = await env.events("audit.recorded", action="media.read", resource_id=media_id, outcome="success")
    denials = await env.events("audit.recorded", action="media.read", resource_id=media_id, outcome="denied")
    assert len(successes) == len(allowed) and len(denials) == len(denied)
    worker_read = [s for s in successes if s["actor_type"] == "worker_token"]
    assert len(worker_read) == 1 and worker_read[0]["token_id"]
    assert all(d["reason"] for d in denials)


async def test_write_policy(env) -> None:  # noqa: ANN001
    for claims, status in [(dict(proj={env.project_id: "annotator"}), 403), (dict(roles=("auditor",)), 403),
                           (dict(roles=("org_admin",), org=env.other_org_id), 404),
                           (dict(kind="worker", proj={env.project_id: "annotator"},
                                 scopes=("media:read",)), 403)]:
        response = await env.upload(TEXT, "x.txt", "text/plain", headers=await env.headers(**claims))
        assert response.status_code == status, (claims, response.text)
    response = await env.upload(TEXT, "x.txt", "text/plain",
                                headers=await env.headers(proj={env.project_id: "project_manager"}))
    assert response.status_code == 201


async def test_signed_link_works_without_token_expires_and_resists_tampering(env) -> None:  # noqa: ANN001
    media_id, url = await _media(env)
    annotator = await env.headers(proj={env.project_id: "annotator"}, sub="annotator-7")
    minted = await env.client.post(f"/api/v1/media/{media_id}/links", headers=annotator, json={"ttl_seconds": 60})
    assert minted.status_code == 201, minted.text
    link = minted.json()
    assert link["ttl_seconds"] == 60 and abs(link["expires_at"] - (time.time() + 60)) < 5
    parts = urlsplit(link["url"])
    path_and_query = f"{parts.path}?{parts.query}"

    response = await env.client.get(path_and_query)  # no Authorization header
    assert response.status_code == 200 and response.content == TEXT
    ranged = await env.client.get(path_and_query, headers={"Range": "bytes=0-8"})
    assert ranged.status_code == 206 and ranged.content == TEXT[:9]

    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    tampered = [
        {**query, "sig": query["sig"][:-1] + ("A" if query["sig"][-1] != "A" else "B")},
        {**query, "exp": str(int(query["exp"]) + 3600)},
        {**query, "by": "someone-else"},
        {k: v for k, v in query.items() if k != "kv"},
    ]
    for params in tampered:
        response = await env.client.get(parts.path, params=params)
        assert response.status_code == 403, (params, response.text)
        assert TEXT not in response.content
    other_id, _ = await _media_other(env)
    response = await env.client.get(f"/api/v1/media/{other_id}", params=query)  # a link for another media
    assert response.status_code == 403

    # expired: mint a 1-second link and wait for its expiry by polling the clock, not sleeping blindly
    short = (await env.client.post(f"/api/v1/media/{media_id}/links", headers=annotator,
                                   json={"ttl_seconds": 1})).json()
    deadline = time.time() + 5
    while time.time() <= short["expires_at"] and time.time() < deadline:
        time.sleep(0.05)
    parts = urlsplit(short["url"])
    expired = await env.client.get(f"{parts.path}?{parts.query}")
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]

    too_long = await env.client.post(f"/api/v1/media/{media_id}/links", headers=annotator,
                                     json={"ttl_seconds": env.settings.media_link_max_ttl_seconds + 1})
    assert too_long.status_code == 400
    outsider = await env.headers(proj={env.other_project_id: "annotator"})
    assert (await env.client.post(f"/api/v1/media/{media_id}/links", headers=outsider, json={})).status_code == 403

    link_uses = await env.events("audit.recorded", action="media.read", resource_id=media_id, outcome="success")
    assert link_uses and all(u["details"].get("via") == "signed_link" for u in link_uses)
    assert all(u["details"]["link_issued_by"] == "annotator-7" for u in link_uses)
    minted_events = await env.events("audit.recorded", action="media.link", resource_id=media_id)
    assert {e["outcome"] for e in minted_events} == {"success", "denied"}


async def _media_other(env) -> tuple[str, str]:  # noqa: ANN001
    created = await env.upload(b"a different file entirely\n", "other.txt", "text/plain")
    return created.json()["id"], created.json()["url"]
