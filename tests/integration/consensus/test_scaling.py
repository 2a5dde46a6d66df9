"""What keeps a submit's cost independent of the project's size, and a refit from stalling submissions.

The per-submit statements are checked under generic plans made while the tables are tiny and have no statistics:
that is the plan a long-lived connection caches early and keeps (until an ANALYZE, which a server with autovacuum
off never runs). Such a plan once seq-scanned `labels` and walked the low-confidence index of the whole project on
every submit (`benchmarks/consensus_latency.py --seconds 120`: p50 10 → 40 ms over 60,000 labels)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from services.consensus.db import row_slices, rows_in_slices
from services.consensus.labels.models import labels
from services.consensus.labels.service import project_labels
from services.consensus.results import batch

CLASSES = ["cat", "dog"]


async def _plan(consensus, statement: sa.TextClause, params: dict) -> str:  # noqa: ANN001
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    args = [params[name] for name in compiled.positiontup]
    async with consensus.ctx.engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        tx = pg.transaction()
        await tx.start()
        try:
            await pg.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            explain = await pg.prepare("EXPLAIN " + str(compiled))
            return "\n".join(row[0] for row in await explain.fetch(*args))
        finally:
            await tx.rollback()


async def test_per_submit_statements_use_task_keyed_indexes_under_a_generic_plan(consensus) -> None:  # noqa: ANN001
    envelope = await consensus.submit("t1", "ann-1", "cat", classes=CLASSES)  # a few rows, no statistics
    await consensus.wait_handled(envelope)
    row = {"annotation_id": str(uuid.uuid4()), "project_id": consensus.project_id, "task_id": "t1",
           "control": "label", "annotator_id": "ann-2", "label_type": "single_choice", "value": "dog",
           "submitted_at": datetime.now(UTC).isoformat()}
    load = await _plan(consensus, batch._STORE_AND_LOAD, {"rows": orjson.dumps([row]).decode()})
    assert "Seq Scan on labels" not in load, load
    assert "ix_consensus_results_low" not in load, load  # the current result is read by its primary key
    assert "consensus_results_pkey" in load, load
    write = await _plan(consensus, batch._WRITE_AND_ANNOUNCE, {"rows": "[]", "stream": "s", "channel": "c"})
    assert "on labels" not in write, write  # flagging superseded labels is a separate, rarer statement


async def test_a_resubmission_flags_the_earlier_label_superseded(consensus) -> None:  # noqa: ANN001
    first = await consensus.submit("re", "ann-1", "cat", classes=CLASSES)
    await consensus.wait_handled(first)
    second = await consensus.submit("re", "ann-1", "dog", classes=CLASSES)
    await consensus.wait_handled(second)
    async with consensus.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(labels.c.annotation_id, labels.c.superseded).where(
            labels.c.project_id == uuid.UUID(consensus.project_id), labels.c.task_id == "re"))).all()
    flags = {r.annotation_id: r.superseded for r in rows}
    assert flags == {first.payload["annotation_id"]: True, second.payload["annotation_id"]: False}


async def test_a_refit_reads_a_large_project_in_slices_and_misses_no_label(consensus) -> None:  # noqa: ANN001
    project = uuid.UUID(consensus.project_id)
    now = datetime.now(UTC)
    n = 4_500  # more than two slices of 2,000
    async with consensus.ctx.session_factory() as session, session.begin():
        await session.execute(sa.insert(labels), [
            {"annotation_id": f"bulk-{i}", "project_id": project, "task_id": f"t{i // 3}", "control": "label",
             "annotator_id": f"a{i % 3}", "label_type": "single_choice", "value": CLASSES[i % 2],
             "submitted_at": now, "superseded": i % 500 == 0} for i in range(n)])
    async with consensus.ctx.session_factory() as session:
        data = await project_labels(session, project, "label")
        plain = (await session.execute(sa.select(labels.c.id, labels.c.task_id, labels.c.value).where(
            labels.c.project_id == project, labels.c.control == "label", labels.c.superseded.is_(False))
            .order_by(labels.c.id))).all()
        sizes = [len(part) async for part in row_slices(session, sa.select(labels.c.id).where(
            labels.c.project_id == project))]
        every = await rows_in_slices(session, sa.select(labels.c.id).where(labels.c.project_id == project), 1000)
    assert data.ids == [r.id for r in plain] and data.tasks == [r.task_id for r in plain]
    assert data.values == [r.value for r in plain] and len(data.ids) == n - n // 500
    assert data.max_label_id == plain[-1].id
    assert sizes == [2000, 2000, 500] and len(every) == n
