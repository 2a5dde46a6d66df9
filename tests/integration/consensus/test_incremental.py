"""annotation.submitted on the api stream -> stored label -> incremental consensus -> consensus.updated."""

from __future__ import annotations

import uuid

from tests.conftest import wait_until

CLASSES = ["cat", "dog"]


async def test_submission_updates_consensus_and_flags_low_confidence(consensus) -> None:  # noqa: ANN001
    await consensus.submit("t1", "ann-1", "cat", classes=CLASSES)
    [event] = await consensus.wait_published(task_id="t1")
    assert event["label"] == "cat" and event["n_labels"] == 1 and event["control"] == "label"
    assert event["low_confidence"] is True and event["status"] == "needs_more_labels"
    assert event["labels_needed"] >= 1 and event["result_version"] == 1
    assert 0.5 < event["confidence"] < 0.8

    body = await consensus.task("t1")
    [result] = body["results"]
    assert result["label"] == "cat" and result["low_confidence"] is True and result["version"] == 1
    assert result["labels_needed"] == event["labels_needed"]

    await consensus.submit("t1", "ann-2", "cat", classes=CLASSES)
    await consensus.submit("t1", "ann-3", "cat", classes=CLASSES)
    events = await consensus.wait_published(task_id="t1", n_labels=3)
    assert events[-1]["low_confidence"] is False and events[-1]["status"] == "resolved"
    assert events[-1]["labels_needed"] == 0 and events[-1]["confidence"] > 0.8
    assert (await consensus.task("t1"))["results"][0]["version"] == 3

    low = await consensus.client.get(f"{consensus.base}/results", params={"low_confidence": "true"},
                                     headers=consensus.manager())
    assert low.status_code == 200 and low.json()["items"] == []


async def test_duplicate_delivery_is_counted_once(consensus) -> None:  # noqa: ANN001
    envelope = consensus.annotation("dup", "ann-1", "dog", classes=CLASSES)
    await consensus.publish(envelope, envelope)  # the same event delivered twice
    # the api re-publishing the same annotation under a new event id is a duplicate too
    again = consensus.annotation("dup", "ann-1", "dog", classes=CLASSES,
                                 annotation_id=envelope.payload["annotation_id"])
    await consensus.publish(again)
    await consensus.wait_handled(envelope, again)
    updates = await consensus.wait_published(task_id="dup")
    assert len(updates) == 1 and updates[0]["n_labels"] == 1
    result = (await consensus.task("dup"))["results"][0]
    assert result["n_labels"] == 1 and result["version"] == 1


async def test_resubmission_replaces_the_annotators_earlier_label(consensus) -> None:  # noqa: ANN001
    await consensus.submit("re", "ann-1", "cat", classes=CLASSES)
    await consensus.wait_published(task_id="re", label="cat")
    await consensus.submit("re", "ann-1", "dog", classes=CLASSES)
    events = await consensus.wait_published(task_id="re", label="dog")
    assert events[-1]["n_labels"] == 1 and events[-1]["result_version"] == 2
    history = (await consensus.client.get(f"{consensus.base}/tasks/re", params={"history": "true"},
                                          headers=consensus.manager())).json()["history"]
    assert [h["label"] for h in history] == ["cat", "dog"]


async def test_labels_outside_the_schema_are_ignored(consensus, caplog) -> None:  # noqa: ANN001
    odd = [await consensus.submit("odd", "ann-1", "horse", classes=CLASSES),
           await consensus.submit("odd", "ann-2", {"unexpected": "shape"}, classes=CLASSES),
           await consensus.submit("odd", "ann-3", "x", label_type="hologram")]
    await consensus.wait_handled(*odd)
    assert await consensus.published(task_id="odd") == []
    missing = await consensus.client.get(f"{consensus.base}/tasks/odd", headers=consensus.manager())
    assert missing.status_code == 404
    assert any("ignoring annotation" in r.getMessage() for r in caplog.records)


async def test_everyone_disagrees_until_the_label_budget_is_spent(consensus) -> None:  # noqa: ANN001
    classes = ["a", "b", "c", "d", "e"]
    for i, value in enumerate(classes):
        await consensus.submit("split", f"ann-{i}", value, classes=classes)
    events = await consensus.wait_published(task_id="split", n_labels=5)
    final = events[-1]
    assert final["low_confidence"] is True and final["status"] == "insufficient" and final["labels_needed"] == 0
    assert final["label"] == "a"  # a five-way tie goes to the first class


async def test_gold_label_fixes_the_consensus(consensus) -> None:  # noqa: ANN001
    from shared.events.envelope import new_event

    await consensus.submit("g1", "ann-1", "cat", classes=CLASSES)
    await consensus.wait_published(task_id="g1")
    gold = new_event("gold.set", {"task_id": "g1", "project_id": consensus.project_id, "control": "label",
                                  "value": "dog"}, producer="api", org_id=consensus.org_id,
                     project_id=consensus.project_id)
    await consensus.publish(gold)
    [event] = await consensus.wait_published(task_id="g1", label="dog")
    assert event["confidence"] == 1.0 and event["low_confidence"] is False


async def test_other_label_types(consensus) -> None:  # noqa: ANN001
    for annotator, value in (("a1", 4), ("a2", 4), ("a3", 5), ("a4", 40)):
        await consensus.submit("rate", annotator, value, control="rating", label_type="rating")
    events = await consensus.wait_published(task_id="rate", n_labels=4)
    assert 4 <= events[-1]["label"] <= 5  # robust to the outlier
    for annotator, value in (("a1", ["x", "y"]), ("a2", ["x"]), ("a3", ["x", "y"])):
        await consensus.submit("multi", annotator, value, control="tags", label_type="multi_choice")
    events = await consensus.wait_published(task_id="multi", n_labels=3)
    assert events[-1]["label"] == ["x", "y"] and events[-1]["control"] == "tags"
    for annotator, value in (("a1", "the cat sat"), ("a2", "the cat sat"), ("a3", "teh cat sat")):
        await consensus.submit("text", annotator, value, control="caption", label_type="text")
    events = await consensus.wait_published(task_id="text", n_labels=3)
    assert events[-1]["label"] == "the cat sat"


async def test_events_of_another_project_do_not_leak(consensus) -> None:  # noqa: ANN001
    other = str(uuid.uuid4())
    await consensus.submit("t", "ann-1", "cat", classes=CLASSES, project_id=other)
    await consensus.submit("t", "ann-1", "dog", classes=CLASSES)
    [mine] = await consensus.wait_published(task_id="t")
    assert mine["label"] == "dog"
    await wait_until(lambda: consensus.ctx.consumers[0].stats.handled >= 2)


async def test_an_erased_task_leaves_no_labels_or_results(consensus) -> None:  # noqa: ANN001
    import sqlalchemy as sa

    from services.consensus.labels.models import labels
    from services.consensus.results.models import consensus_history
    from shared.events.envelope import new_event

    await consensus.submit("gone", "ann-1", "cat", classes=CLASSES)
    await consensus.submit("stays", "ann-1", "dog", classes=CLASSES)
    await consensus.wait_published(task_id="gone")
    await consensus.wait_published(task_id="stays")
    deleted = new_event("task.deleted", {"task_id": "gone", "project_id": consensus.project_id}, producer="api",
                        org_id=consensus.org_id, project_id=consensus.project_id)
    await consensus.publish(deleted)
    await consensus.wait_handled(deleted)
    r = await consensus.client.get(f"{consensus.base}/tasks/gone", headers=consensus.manager())
    assert r.status_code == 404
    async with consensus.ctx.session_factory() as session:
        for table in (labels, consensus_history):
            rows = (await session.execute(sa.select(table.c.task_id).where(
                table.c.project_id == uuid.UUID(consensus.project_id)))).scalars().all()
            assert set(rows) == {"stays"}
    assert (await consensus.task("stays"))["results"][0]["label"] == "dog"
