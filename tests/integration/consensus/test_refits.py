"""Background refits: versioned models and results, re-announced changes, quality flags and pause events."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.integration.consensus import planted


async def refit(env) -> dict:  # noqa: ANN001
    response = await env.client.post(f"{env.base}/refits", headers=env.manager())
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "queued" and run["reason"] == "manual"

    async def finished() -> dict | None:
        r = await env.client.get(f"{env.base}/refits/{run['id']}", headers=env.manager())
        body = r.json()
        return body if body["status"] in ("succeeded", "failed") else None
    done = await wait_until(finished, timeout=30)
    assert done["status"] == "succeeded", done
    return done


async def test_refit_versions_results_and_reannounces_changes(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    before = (await consensus.task("tie"))["results"][0]
    assert before["label"] == "a" and before["confidence"] == 0.5 and before["model_version"] is None

    run = await refit(consensus)
    summary = run["summary"]["controls"]["label"]
    assert summary["model_version"] == 1 and summary["n_workers"] == 5 and summary["changed_tasks"] >= 1

    after = (await consensus.task("tie"))["results"][0]
    assert after["label"] == "b" and after["model_version"] == 1 and after["source"] == "refit"
    assert after["version"] == before["version"] + 1
    [event] = await consensus.wait_published(task_id="tie", source="refit")
    assert event["label"] == "b" and event["model_version"] == 1 and event["result_version"] == after["version"]
    history = (await consensus.client.get(f"{consensus.base}/tasks/tie", params={"history": "true"},
                                          headers=consensus.manager())).json()["history"]
    assert [h["version"] for h in history] == list(range(1, after["version"] + 1))
    assert history[-1]["label"] == "b" and history[-2]["label"] == "a"

    # the next submission is updated incrementally with the fitted parameters: the spammer alone barely counts
    await consensus.submit("fresh", planted.SPAMMER, "a", classes=planted.CLASSES)
    await consensus.submit("fresh-2", "good-1", "a", classes=planted.CLASSES)
    [spam] = await consensus.wait_published(task_id="fresh")
    [good] = await consensus.wait_published(task_id="fresh-2")
    assert spam["model_version"] == 1 and spam["source"] == "incremental"
    assert spam["confidence"] < good["confidence"]

    listing = (await consensus.client.get(f"{consensus.base}/refits", headers=consensus.manager())).json()
    assert listing["models"][0]["version"] == 1 and listing["runs"][0]["status"] == "succeeded"

    # a second refit makes model version 2; unchanged tasks are not re-announced
    n_before = len(await consensus.published(source="refit"))
    run2 = await refit(consensus)
    assert run2["summary"]["controls"]["label"]["model_version"] == 2
    assert len(await consensus.published(source="refit")) - n_before == run2["summary"]["controls"]["label"][
        "changed_tasks"]


async def test_quality_flags_a_planted_spammer_and_pauses_them(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    run = await refit(consensus)
    assert run["summary"]["annotator_actions"]["paused"] == [planted.SPAMMER]
    [event] = await consensus.wait_published("annotator.quality_changed", annotator_id=planted.SPAMMER)
    assert event["action"] == "pause" and "spammer" in event["flags"]
    assert await consensus.published("annotator.quality_changed", action="pause") == [event]

    table = (await consensus.client.get(f"{consensus.base}/annotators", headers=consensus.manager())).json()
    rows = {r["annotator_id"]: r for r in table["annotators"]}
    assert set(rows) == {*planted.GOOD, planted.SPAMMER} and table["classes"] == planted.CLASSES
    spam = rows[planted.SPAMMER]
    assert spam["flags"] == ["spammer"] and spam["paused"] is True and spam["reasons"]
    assert spam["gold"]["n"] == planted.N_GOLD and spam["gold"]["accuracy"] == 0.5
    low, high = spam["gold"]["interval_95"]
    assert low < 0.5 < high
    for name in planted.GOOD:
        assert rows[name]["flags"] == [] and rows[name]["paused"] is False
        assert rows[name]["gold"]["accuracy"] >= 0.8 and rows[name]["consensus_agreement"] >= 0.85
        assert rows[name]["model_accuracy"] > spam["model_accuracy"]

    # the same verdict after another refit emits nothing new
    await refit(consensus)
    assert len(await consensus.published("annotator.quality_changed")) == 1


async def test_refit_after_enough_new_labels(consensus) -> None:  # noqa: ANN001
    await consensus.submit("first", "ann-1", "a", classes=planted.CLASSES)
    await consensus.wait_published(task_id="first")
    settings = (await consensus.client.get(f"{consensus.base}/settings", headers=consensus.manager())).json()
    body = {k: settings[k] for k in ("method", "target_confidence", "max_labels", "refit_interval_seconds")}
    response = await consensus.client.put(f"{consensus.base}/settings", json={**body, "refit_after_labels": 5},
                                          headers=consensus.manager())
    assert response.status_code == 200, response.text
    for i in range(5):
        await consensus.submit(f"task-{i}", "ann-2", "b", classes=planted.CLASSES)

    async def fitted() -> list | None:
        body = (await consensus.client.get(f"{consensus.base}/refits", headers=consensus.manager())).json()
        done = [r for r in body["runs"] if r["reason"] == "labels" and r["status"] == "succeeded"]
        return done or None
    [run] = await wait_until(fitted, timeout=30)
    assert run["summary"]["controls"]["label"]["n_labels"] == 6
