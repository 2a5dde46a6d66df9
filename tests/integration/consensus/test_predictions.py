"""predictions.imported on the api stream -> stored priors -> consensus that weighs the model's predictions."""

from __future__ import annotations

from typing import Any

from shared.events.envelope import Envelope, new_event
from tests.integration.consensus import planted
from tests.integration.consensus.test_refits import refit

CLASSES = ["cat", "dog"]


def predictions(env, *entries: tuple[str, Any, float | None]) -> Envelope:  # noqa: ANN001
    """(task, value, score) entries of the `label` control, as the api's import stages them."""
    return new_event("predictions.imported", {
        "project_id": env.project_id, "dataset_id": "import-1",
        "predictions": [{"task_id": task, "control": "label", "model_version": "clf-3", "value": value,
                         "score": score} for task, value, score in entries]},
        producer="api", org_id=env.org_id, project_id=env.project_id)


async def posterior_of(env, task: str, value: str) -> float:  # noqa: ANN001
    [result] = (await env.task(task))["results"]
    return dict(map(tuple, result["posterior"]))[value]


async def test_a_confident_prediction_moves_the_confidence_of_a_label(consensus) -> None:  # noqa: ANN001
    # imported before anyone labels the tasks (the control is not even known yet): stored, nothing announced
    imported = predictions(consensus, ("agree", "cat", 0.9), ("disagree", "dog", 0.9), ("unscored", "cat", None))
    await consensus.publish(imported)
    await consensus.wait_handled(imported)
    assert await consensus.published() == []

    for task in ("plain", "agree", "disagree", "unscored"):
        await consensus.submit(task, "ann-1", "cat", classes=CLASSES)
    plain, agree, disagree, unscored = [(await consensus.wait_published(task_id=t))[0]
                                        for t in ("plain", "agree", "disagree", "unscored")]
    assert plain["label"] == agree["label"] == unscored["label"] == "cat"
    assert agree["confidence"] > unscored["confidence"] > plain["confidence"]
    assert await posterior_of(consensus, "disagree", "cat") < plain["confidence"]
    assert disagree["label"] == "dog"  # one default annotator against a 90 % confident model

    # the next label continues from the prior (incremental == recompute from the stored evidence)
    await consensus.submit("agree", "ann-2", "cat", classes=CLASSES)
    [_, second] = await consensus.wait_published(task_id="agree", count=2)
    assert second["n_labels"] == 2 and second["confidence"] > agree["confidence"]


async def test_predictions_after_the_labels_announce_a_new_consensus(consensus) -> None:  # noqa: ANN001
    await consensus.submit("late", "ann-1", "cat", classes=CLASSES)
    [first] = await consensus.wait_published(task_id="late")
    await consensus.publish(predictions(consensus, ("late", "dog", 0.95), ("never-labelled", "cat", 0.9)))
    [update] = await consensus.wait_published(task_id="late", label="dog")
    assert update["result_version"] == first["result_version"] + 1 and update["n_labels"] == 1
    assert update["source"] == "incremental" and update["confidence"] > 0.8
    body = await consensus.task("late")
    assert body["results"][0]["label"] == "dog" and body["results"][0]["version"] == 2
    # a task nobody labelled gets no consensus from a prediction alone
    missing = await consensus.client.get(f"{consensus.base}/tasks/never-labelled", headers=consensus.manager())
    assert missing.status_code == 404

    # a newer prediction for the same task replaces the earlier one
    await consensus.publish(predictions(consensus, ("late", "cat", 0.95)))
    [back] = await consensus.wait_published(task_id="late", result_version=3)
    assert back["label"] == "cat" and back["confidence"] > first["confidence"]


async def test_a_prediction_outside_the_schema_is_ignored_with_a_log(consensus, caplog) -> None:  # noqa: ANN001
    await consensus.submit("odd", "ann-1", "cat", classes=CLASSES)
    [first] = await consensus.wait_published(task_id="odd")
    odd = predictions(consensus, ("odd", "horse", 0.99), ("odd-2", {"no": "class"}, 0.99))
    await consensus.publish(odd)
    await consensus.wait_handled(odd)
    assert await consensus.published(task_id="odd") == [first]
    messages = [r.getMessage() for r in caplog.records if r.name == "quorum.consensus.predictions"]
    assert any("ignoring prediction for task odd " in m and "horse" in m for m in messages)
    assert any("ignoring prediction for task odd-2 " in m for m in messages)
    assert (await consensus.task("odd"))["results"][0]["version"] == 1


async def test_refits_use_the_predictions(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    # a second copy of the planted tie (good-0 says b, the spammer a), this one with a confident prediction of a
    await consensus.submit("tie-predicted", "good-0", "b", classes=planted.CLASSES)
    await consensus.submit("tie-predicted", planted.SPAMMER, "a", classes=planted.CLASSES)
    await consensus.wait_published(task_id="tie-predicted", n_labels=2)
    await consensus.publish(predictions(consensus, ("tie-predicted", "a", 0.99)))
    await consensus.wait_published(task_id="tie-predicted", n_labels=2, label="a")

    await refit(consensus)
    # the fit trusts good-0 over the spammer: the plain tie goes to b, the predicted one stays with the model
    tie = (await consensus.task("tie"))["results"][0]
    predicted = (await consensus.task("tie-predicted"))["results"][0]
    assert tie["label"] == "b" and tie["model_version"] == 1
    assert predicted["label"] == "a" and predicted["model_version"] == 1 and predicted["source"] == "refit"
    assert predicted["confidence"] < 0.99  # good-0's label now counts against it
    [event] = await consensus.wait_published(task_id="tie-predicted", source="refit")
    assert event["label"] == "a" and event["model_version"] == 1
