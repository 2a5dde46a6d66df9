"""Label Studio predictions of single_choice controls -> one `predictions.imported` event per committed chunk."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa

from services.api.db import outbox
from services.api.tasks.models import Task
from shared.events.catalog import PredictionsImported
from tests.integration.ingest.conftest import IngestEnv


def choice(option: str, **region: Any) -> dict[str, Any]:
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [option]}, **region}


def row(i: int) -> dict[str, Any]:
    """Row i of the file: a Label Studio task whose predictions vary with i."""
    text = f"sample text number {i}"
    if i % 5 == 0:
        return {"data": {"text": text}}  # no predictions
    if i % 5 == 1:  # the prediction's score
        return {"data": {"text": text}, "predictions": [
            {"model_version": "clf-1", "score": 0.8, "result": [choice("pos")]}]}
    if i % 5 == 2:  # a region's own score wins; a spans region is no choice
        return {"data": {"text": text}, "predictions": [{"model_version": 7, "score": 0.5, "result": [
            {"from_name": "entities", "to_name": "text", "type": "labels",
             "value": {"start": 0, "end": 6, "labels": ["ORG"]}},
            choice("neg", score=0.7)]}]}
    if i % 5 == 3:  # only a spans prediction: nothing for the consensus
        return {"data": {"text": text}, "predictions": [{"result": [
            {"from_name": "entities", "to_name": "text", "type": "labels",
             "value": {"start": 0, "end": 6, "labels": ["PER"]}}]}]}
    # two models, one without a score and one with a score that is no confidence
    return {"data": {"text": text}, "predictions": [{"result": [choice("neutral")]},
                                                    {"model_version": "big", "score": 7, "result": [choice("pos")]}]}


def expected_entries(i: int) -> list[tuple[str, str | None, str, float | None]]:
    """(control, model_version, value, score) the row's task must get."""
    return {0: [], 1: [("sentiment", "clf-1", "pos", 0.8)], 2: [("sentiment", "7", "neg", 0.7)], 3: [],
            4: [("sentiment", None, "neutral", None), ("sentiment", "big", "pos", None)]}[i % 5]


async def staged(ingest: IngestEnv, pid: str, type: str) -> list[dict[str, Any]]:
    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(outbox.c.envelope).where(outbox.c.type == type)
                                      .order_by(outbox.c.seq))).scalars()
        return [e for e in map(json.loads, rows) if e["project_id"] == pid]


async def task_rows(ingest: IngestEnv, pid: str) -> dict[str, int]:
    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(Task.id, Task.row_number).where(Task.project_id == uuid.UUID(pid))))
        return {str(r.id): r.row_number for r in rows}


async def test_choice_predictions_are_announced_once_per_chunk_for_new_tasks_only(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    rows = [row(i) for i in range(120)]  # several blocks (4 KiB each in these tests)
    op = await ingest.run_import(pid, json.dumps(rows).encode(), "application/json")
    assert op["counts"]["created"] == 120 and op["counts"]["invalid"] == 0, op

    imported = await staged(ingest, pid, "tasks.imported")
    announced = await staged(ingest, pid, "predictions.imported")
    chunks = len(imported)
    assert chunks > 1 and len(announced) == chunks
    row_of = await task_rows(ingest, pid)  # row numbers are 1-based
    for tasks_event, event in zip(imported, announced, strict=True):
        payload = PredictionsImported.model_validate(event["payload"])  # the catalog's schema, exactly
        assert event["version"] == 1 and event["producer"] == "api" and event["org_id"] == tasks_event["org_id"]
        assert payload.project_id == pid and payload.dataset_id == op["id"]
        chunk_tasks = tasks_event["payload"]["task_ids"]
        assert {p.task_id for p in payload.predictions} <= set(chunk_tasks)  # the same chunk's new tasks
        got = sorted(((row_of[p.task_id], p.control, p.model_version, p.value, p.score) for p in payload.predictions),
                     key=repr)
        want = sorted(((row_of[t], *entry) for t in chunk_tasks for entry in expected_entries(row_of[t] - 1)),
                      key=repr)
        assert got == want
    assert sum(len(e["payload"]["predictions"]) for e in announced) == 24 + 24 + 2 * 24

    # the same file again: every task is a duplicate, nothing is announced
    again = await ingest.run_import(pid, json.dumps(rows).encode(), "application/json")
    assert again["counts"]["created"] == 0 and again["counts"]["duplicates"] == 120
    assert len(await staged(ingest, pid, "predictions.imported")) == chunks
    assert len(await staged(ingest, pid, "tasks.imported")) == chunks

    # duplicates next to new tasks in one chunk: only the new tasks' predictions
    mixed = await ingest.run_import(pid, json.dumps(rows[:10] + [row(121), row(122)]).encode(), "application/json")
    assert mixed["counts"]["created"] == 2 and mixed["counts"]["duplicates"] == 10
    [*_, last] = await staged(ingest, pid, "predictions.imported")
    [*_, last_tasks] = await staged(ingest, pid, "tasks.imported")
    new_tasks = last_tasks["payload"]["task_ids"]
    assert len(new_tasks) == 2
    assert sorted((p["task_id"], p["value"], p["score"]) for p in last["payload"]["predictions"]) == sorted(
        [(new_tasks[0], "pos", 0.8), (new_tasks[1], "neg", 0.7)])


async def test_a_chunk_without_choice_predictions_announces_none(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    rows = [row(i) for i in range(40) if i % 5 in (0, 3)]
    op = await ingest.run_import(pid, json.dumps(rows).encode(), "application/json")
    assert op["counts"]["created"] == len(rows)
    assert len(await staged(ingest, pid, "tasks.imported")) == 1
    assert await staged(ingest, pid, "predictions.imported") == []
