"""Majority vote in the service: a refit records the project's first-seen class order and the incremental
update breaks later ties with it, as the refit does."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.integration.consensus.test_refits import refit

CLASSES = ["a", "b", "c"]


async def test_majority_vote_ties_follow_the_first_seen_order_after_a_refit(consensus) -> None:  # noqa: ANN001
    await consensus.submit("seed", "ann-0", "c", classes=CLASSES)  # "c" is the project's first label
    await consensus.wait_published(task_id="seed")
    response = await consensus.client.put(f"{consensus.base}/settings", headers=consensus.manager(), json={
        "method": "majority_vote", "target_confidence": 0.8, "max_labels": 5,
        "refit_after_labels": 1_000_000, "refit_interval_seconds": 86_400})
    assert response.status_code == 200, response.text

    async def settings_refit_done() -> bool | None:  # the method change queued a refit
        body = (await consensus.client.get(f"{consensus.base}/refits", headers=consensus.manager())).json()
        return True if any(r["reason"] == "settings" and r["status"] == "succeeded" for r in body["runs"]) else None
    await wait_until(settings_refit_done, timeout=30)
    await consensus.submit("tie", "ann-1", "b", classes=CLASSES)
    await consensus.submit("tie", "ann-2", "c", classes=CLASSES)
    [before] = await consensus.wait_published(task_id="tie", n_labels=2)
    assert before["label"] == "c" and before["confidence"] == 0.4  # (1 + 1) / (2 + 3): still a tie

    await consensus.submit("tie-2", "ann-3", "a", classes=CLASSES)
    await consensus.submit("tie-2", "ann-4", "b", classes=CLASSES)
    [incremental] = await consensus.wait_published(task_id="tie-2", n_labels=2)
    # the fit saw only "c": the schema's other classes follow it in class order (c, a, b)
    assert incremental["label"] == "a" and incremental["source"] == "incremental"

    run = await refit(consensus)  # now the project's order is c, b, a
    assert run["summary"]["controls"]["label"]["tie_order"] == ["c", "b", "a"]
    [refitted] = await consensus.wait_published(task_id="tie-2", source="refit")
    assert refitted["label"] == "b"
    await consensus.submit("tie-3", "ann-5", "a", classes=CLASSES)
    await consensus.submit("tie-3", "ann-6", "b", classes=CLASSES)
    [after] = await consensus.wait_published(task_id="tie-3", n_labels=2)
    assert after["label"] == "b" and after["source"] == "incremental" and after["model_version"] == refitted[
        "model_version"]
    assert (await consensus.task("tie"))["results"][0]["label"] == "c"
