"""project.configured from the api: settings exist before the first label, and the api's method is used."""

from __future__ import annotations

from shared.events.envelope import new_event
from tests.conftest import wait_until


def configured(env, **payload):  # noqa: ANN001, ANN201
    body = {"project_id": env.project_id, "schema_version": 1, "overlap": 3, "consensus_method": "dawid_skene",
            "target_confidence": 0.9, "max_labels": 7,
            "controls": {"label": {"label_type": "single_choice", "classes": ["cat", "dog", "bird"]}}, **payload}
    return new_event("project.configured", body, producer="api", org_id=env.org_id, project_id=env.project_id)


async def settings_when(env, predicate):  # noqa: ANN001, ANN201
    async def ready():  # noqa: ANN202
        r = await env.client.get(f"{env.base}/settings", headers=env.manager())
        return r.json() if r.status_code == 200 and predicate(r.json()) else None
    return await wait_until(ready, timeout=15)


async def test_settings_exist_before_any_label_and_follow_the_api(consensus) -> None:  # noqa: ANN001
    before = await consensus.client.get(f"{consensus.base}/settings", headers=consensus.manager())
    assert before.status_code == 404  # nothing known yet: not even the owning organisation

    await consensus.publish(configured(consensus))
    body = await settings_when(consensus, lambda b: True)
    assert body["method"] == "dawid_skene" and body["target_confidence"] == 0.9 and body["max_labels"] == 7
    assert body["controls"]["label"] == {"label_type": "single_choice", "classes": ["cat", "dog", "bird"],
                                         "classes_source": "schema"}

    # a manager can now change them here before any label arrives
    put = await consensus.client.put(f"{consensus.base}/settings", headers=consensus.manager(), json={
        "method": "glad", "target_confidence": 0.85, "max_labels": 6, "refit_after_labels": 100,
        "refit_interval_seconds": 600})
    assert put.status_code == 200, put.text
    assert put.json()["method"] == "glad"

    # a later change in the api wins again, and a changed method queues a refit
    await consensus.publish(configured(consensus, consensus_method="majority_vote", schema_version=2))
    body = await settings_when(consensus, lambda b: b["method"] == "majority_vote")
    assert body["max_labels"] == 7
    refits = await consensus.client.get(f"{consensus.base}/refits", headers=consensus.manager())
    assert refits.status_code == 200 and any(r["reason"] == "settings" for r in refits.json()["runs"])


async def test_the_configured_method_aggregates_the_first_labels(consensus) -> None:  # noqa: ANN001
    await consensus.publish(configured(consensus, consensus_method="majority_vote"))
    await settings_when(consensus, lambda b: b["method"] == "majority_vote")
    await consensus.submit("t1", "ann-1", "dog", classes=["cat", "dog", "bird"])
    [event] = await consensus.wait_published(task_id="t1")
    assert event["method"] == "majority_vote" and event["label"] == "dog"


async def test_another_organisations_project_configured_is_not_visible(consensus) -> None:  # noqa: ANN001
    import uuid

    await consensus.publish(configured(consensus))
    await settings_when(consensus, lambda b: True)
    outsider = consensus.headers(org=str(uuid.uuid4()), proj={consensus.project_id: "project_manager"},
                                 roles=("project_manager",))
    r = await consensus.client.get(f"{consensus.base}/settings", headers=outsider)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
