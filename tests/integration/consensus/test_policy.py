"""Who sees a project's consensus data: its managers and reviewers; never annotators, workers or auditors."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.consensus import planted

READ_PATHS = ["/results", "/tasks/task-1", "/agreement", "/agreement/over-time?format=png", "/annotators",
              "/annotators/good-0/confusion", "/refits"]


@pytest.fixture
async def loaded(consensus):  # noqa: ANN001, ANN201
    await planted.load(consensus)
    return consensus


async def test_managers_and_reviewers_read_quality_data(loaded) -> None:  # noqa: ANN001
    env = loaded
    reviewer = env.headers(proj={env.project_id: "reviewer"})
    org_manager = env.headers(roles=("project_manager",))
    org_admin = env.headers(roles=("org_admin",))
    for headers in (env.manager(), reviewer, org_manager, org_admin):
        for path in ("/results", "/tasks/task-1", "/agreement", "/annotators"):
            response = await env.client.get(env.base + path, headers=headers)
            assert response.status_code == 200, (path, response.text)


async def test_annotators_workers_and_auditors_are_refused(loaded) -> None:  # noqa: ANN001
    env = loaded
    callers = {
        "annotator of the project": env.headers(proj={env.project_id: "annotator"}),
        "auditor": env.headers(roles=("auditor",)),
        "member of another project": env.headers(proj={str(uuid.uuid4()): "project_manager"}),
        "vendor worker": env.headers(kind="worker", proj={env.project_id: "annotator"}, scopes=["tasks:read"],
                                     vendor=str(uuid.uuid4()), grant=str(uuid.uuid4()), owner=env.org_id),
    }
    for who, headers in callers.items():
        for path in READ_PATHS:
            response = await env.client.get(env.base + path, headers=headers)
            assert response.status_code in (403, 404), (who, path, response.status_code)
            assert response.headers["content-type"] == "application/problem+json"
            leaked = set(response.json()) & {"items", "results", "summary", "annotators", "confusion", "runs"}
            assert not leaked, (who, path, leaked)


async def test_another_organisation_gets_404(loaded) -> None:  # noqa: ANN001
    env = loaded
    other_org_manager = env.headers(org=str(uuid.uuid4()), proj={env.project_id: "project_manager"},
                                    roles=("org_admin",))
    for path in READ_PATHS + ["/settings"]:
        response = await env.client.get(env.base + path, headers=other_org_manager)
        assert response.status_code == 404, (path, response.text)
    org_manager = env.headers(roles=("project_manager",))
    unknown = await env.client.get(f"/api/v1/consensus/projects/{uuid.uuid4()}/results", headers=org_manager)
    assert unknown.status_code == 404
    not_an_id = await env.client.get("/api/v1/consensus/projects/nope/results", headers=org_manager)
    assert not_an_id.status_code == 404


async def test_no_token_is_401(consensus) -> None:  # noqa: ANN001
    response = await consensus.client.get(consensus.base + "/results")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


async def test_only_managers_change_settings_and_start_refits(loaded) -> None:  # noqa: ANN001
    env = loaded
    reviewer = env.headers(proj={env.project_id: "reviewer"})
    body = {"method": "dawid_skene", "target_confidence": 0.9, "max_labels": 7}
    assert (await env.client.put(f"{env.base}/settings", json=body, headers=reviewer)).status_code == 403
    assert (await env.client.post(f"{env.base}/refits", headers=reviewer)).status_code == 403
    assert (await env.client.get(f"{env.base}/settings", headers=reviewer)).status_code == 403

    bad = await env.client.put(f"{env.base}/settings", json={**body, "method": "coin_flip"}, headers=env.manager())
    assert bad.status_code == 422 and "coin_flip" in bad.text
    bad = await env.client.put(f"{env.base}/settings", json={**body, "target_confidence": 2}, headers=env.manager())
    assert bad.status_code == 422

    ok = await env.client.put(f"{env.base}/settings", json=body, headers=env.manager())
    assert ok.status_code == 200, ok.text
    settings = ok.json()
    assert settings["method"] == "dawid_skene" and settings["max_labels"] == 7
    assert settings["controls"]["label"]["classes"] == planted.CLASSES
    runs = (await env.client.get(f"{env.base}/refits", headers=env.manager())).json()["runs"]
    assert runs[0]["reason"] == "settings"  # a new method refits the project
