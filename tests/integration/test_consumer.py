"""Stream consumers: reclaim after a crash, idempotency, dead-lettering (and the CLI over it), safe trimming."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.worker.db import inbox, received_pings
from shared.config import Settings
from shared.db import create_engine, create_session_factory
from shared.events.consumer import StreamConsumer, dead_letter_stream, trim_acknowledged
from shared.events.envelope import new_event
from shared.events.outbox import events_stream
from shared.ping import ping_handler
from shared.redis import create_redis
from tests.conftest import ROOT, wait_until


@pytest.fixture
async def infra(settings: Settings):  # noqa: ANN201
    engine = create_engine(settings.database_url, pool_size=3)
    redis = create_redis(settings.redis_url)
    yield engine, redis
    keys = [k async for k in redis.scan_iter(match=f"{settings.stream_prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    await engine.dispose()


async def _applied(engine, event_id: str) -> int | None:  # noqa: ANN001
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(received_pings.c.times_applied)
                                   .where(received_pings.c.event_id == event_id))).scalar_one_or_none()


async def _inbox_rows(engine, group: str, event_id: str) -> int:  # noqa: ANN001
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(inbox).where(
            inbox.c.consumer_group == group, inbox.c.event_id == event_id))).scalar_one()


def _ping(message: str = "ping"):  # noqa: ANN202
    return new_event("system.ping", {"message": message}, producer="api")


async def test_entry_of_a_consumer_killed_before_ack_is_reclaimed_and_applied_exactly_once(
        settings: Settings, infra) -> None:  # noqa: ANN001
    engine, redis = infra
    stream = events_stream(settings.stream_prefix, "api")
    group = f"crash-{secrets.token_hex(3)}"
    marker = f"{settings.stream_prefix}:marker"
    release = f"{settings.stream_prefix}:release"
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.support.blocking_consumer", settings.database_url, settings.redis_url,
         stream, group, "doomed", marker, release], cwd=ROOT)
    try:
        await wait_until(lambda: redis.exists(f"{marker}:ready"), timeout=60)
        event = _ping("survives a crash")
        await redis.xadd(stream, event.to_stream_fields())
        # the handler has read the entry and applied (not committed) its effect, and now blocks before the ack
        assert await wait_until(lambda: redis.get(marker), timeout=30) == event.id
        pending = await redis.xpending_range(stream, group, min="-", max="+", count=10)
        assert [(p["consumer"], p["times_delivered"]) for p in pending] == [("doomed", 1)]
    finally:
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(timeout=30) == -signal.SIGKILL

    assert await _applied(engine, event.id) is None, "the killed consumer's uncommitted effect must not survive"
    assert (await redis.xpending(stream, group))["pending"] == 1

    survivor = StreamConsumer(redis=redis, session_factory=create_session_factory(engine), inbox=inbox,
                              group=group, streams=[stream], handlers={"system.ping": ping_handler(received_pings)},
                              dlq_stream=dead_letter_stream(settings.stream_prefix, group), consumer="survivor",
                              reclaim_idle_ms=200)
    assert await survivor.read_once(block_ms=None) == 0, "XREADGROUP > does not redeliver a pending entry"
    assert await wait_until(survivor.reclaim_once, timeout=10) == 1

    assert await _applied(engine, event.id) == 1
    assert await _inbox_rows(engine, group, event.id) == 1
    assert (await redis.xpending(stream, group))["pending"] == 0
    assert survivor.stats.handled == 1 and survivor.stats.failed == 0
    assert await survivor.reclaim_once() == 0 and await survivor.read_once(block_ms=None) == 0
    assert await _applied(engine, event.id) == 1


async def test_duplicate_delivery_is_absorbed_by_the_inbox(settings: Settings, infra) -> None:  # noqa: ANN001
    engine, redis = infra
    stream = events_stream(settings.stream_prefix, "api")
    group = f"dup-{secrets.token_hex(3)}"
    consumer = StreamConsumer(redis=redis, session_factory=create_session_factory(engine), inbox=inbox,
                              group=group, streams=[stream], handlers={"system.ping": ping_handler(received_pings)},
                              dlq_stream=dead_letter_stream(settings.stream_prefix, group))
    await consumer.ensure_groups()
    event = _ping("twice")
    # the relay may publish twice (crash between XADD and marking the row published): same event id, two entries
    await redis.xadd(stream, event.to_stream_fields())
    await redis.xadd(stream, event.to_stream_fields())
    assert await consumer.read_once(block_ms=None) == 2
    assert consumer.stats.handled == 1 and consumer.stats.duplicates == 1
    assert await _applied(engine, event.id) == 1
    assert await _inbox_rows(engine, group, event.id) == 1
    assert (await redis.xpending(stream, group))["pending"] == 0, "the duplicate is acknowledged too"


async def _quorum(settings: Settings, *args: str) -> str:
    executable = Path(sys.executable).with_name("quorum")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "shared.cli"]
    env = {**os.environ, "QUORUM_REDIS_URL": settings.redis_url, "QUORUM_STREAM_PREFIX": settings.stream_prefix}
    proc = await asyncio.create_subprocess_exec(*command, *args, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_poison_event_is_dead_lettered_after_n_deliveries_while_later_events_flow_then_replayed_by_cli(
        settings: Settings, infra) -> None:  # noqa: ANN001
    engine, redis = infra
    stream = events_stream(settings.stream_prefix, "api")
    dlq = dead_letter_stream(settings.stream_prefix, "worker")
    record_ping = ping_handler(received_pings)
    attempts: dict[str, int] = {}
    fixed = False

    async def fragile(session, envelope) -> None:  # noqa: ANN001
        attempts[envelope.id] = attempts.get(envelope.id, 0) + 1
        if envelope.payload["message"] == "poison" and not fixed:
            raise RuntimeError("handler bug triggered by this event")
        await record_ping(session, envelope)

    consumer = StreamConsumer(redis=redis, session_factory=create_session_factory(engine), inbox=inbox,
                              group="worker", streams=[stream], handlers={"system.ping": fragile}, dlq_stream=dlq,
                              block_ms=50, reclaim_idle_ms=50, max_deliveries=3)
    await consumer.ensure_groups()
    poison = _ping("poison")
    later = [_ping(f"later {i}") for i in range(3)]
    await redis.xadd(stream, poison.to_stream_fields())
    for event in later:
        await redis.xadd(stream, event.to_stream_fields())
    running_consumer = asyncio.create_task(consumer.run())
    try:
        async def later_events_applied() -> bool:
            return all([await _applied(engine, e.id) == 1 for e in later])

        await wait_until(later_events_applied, timeout=15)
        await wait_until(lambda: redis.xlen(dlq), timeout=15)
        # 3 deliveries; on the first one the handler also ran inside the rolled-back batch
        assert attempts[poison.id] in (3, 4)
        assert consumer.stats.dead_lettered == 1
        assert (await redis.xpending(stream, "worker"))["pending"] == 0
        assert await _applied(engine, poison.id) is None

        listed = [json.loads(line) for line in (await _quorum(settings, "dlq", "list", "worker")).splitlines()]
        assert len(listed) == 1
        entry = listed[0]
        assert entry["type"] == "system.ping" and entry["source"] == stream
        assert "3 deliveries" in entry["reason"]
        assert json.loads(entry["envelope"])["id"] == poison.id

        # a later event still flows while the dead letter waits for the fix
        after = _ping("after the poison")
        await redis.xadd(stream, after.to_stream_fields())
        await wait_until(lambda: _applied(engine, after.id), timeout=10)

        fixed = True
        assert "replayed 1 event(s)" in await _quorum(settings, "dlq", "replay", "worker")
        await wait_until(lambda: _applied(engine, poison.id), timeout=10)
        assert await _applied(engine, poison.id) == 1
        assert await redis.xlen(dlq) == 0
        assert (await _quorum(settings, "dlq", "list", "worker")).strip() == ""
    finally:
        running_consumer.cancel()
        await asyncio.gather(running_consumer, return_exceptions=True)


async def test_trim_acknowledged_never_drops_an_unacknowledged_entry(settings: Settings, infra) -> None:  # noqa: ANN001
    _, redis = infra
    stream = f"{settings.stream_prefix}:trim"
    assert await trim_acknowledged(redis, stream) == 0, "a missing stream is left alone"
    ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(10)]
    assert await trim_acknowledged(redis, stream) == 0, "no group yet: nobody has acknowledged anything"

    await redis.xgroup_create(stream, "slow", id="0")
    assert await trim_acknowledged(redis, stream) == 0, "a group that has read nothing keeps everything"

    await redis.xgroup_create(stream, "fast", id="0")
    read = await redis.xreadgroup("fast", "c", {stream: ">"}, count=10)
    assert len(read[0][1]) == 10
    await redis.xack(stream, "fast", *ids[:3], ids[6])  # 3..5 and 7..9 stay pending
    read = await redis.xreadgroup("slow", "c", {stream: ">"}, count=5)
    await redis.xack(stream, "slow", *ids[:5])  # slow acked 0..4 and has not yet seen 5..9

    await trim_acknowledged(redis, stream)
    remaining = [mid for mid, _ in await redis.xrange(stream)]
    assert remaining[0] == ids[3], "trimmed up to fast's oldest pending entry, no further"
    for mid in ids[3:]:
        assert mid in remaining
    assert set(ids[:3]).isdisjoint(remaining)

    await redis.xack(stream, "fast", *ids[3:6], *ids[7:])  # fast is done; slow still has 5..9 unread
    await trim_acknowledged(redis, stream)
    remaining = [mid for mid, _ in await redis.xrange(stream)]
    assert set(ids[5:]) <= set(remaining), "entries slow has not read yet survive"
    rest = await redis.xreadgroup("slow", "c", {stream: ">"}, count=10)
    assert [mid for mid, _ in rest[0][1]] == ids[5:]
    pending = await redis.xpending_range(stream, "slow", min="-", max="+", count=10)
    await trim_acknowledged(redis, stream)
    remaining = [mid for mid, _ in await redis.xrange(stream)]
    assert {p["message_id"] for p in pending} <= set(remaining), "pending entries are never trimmed"


async def test_cancelled_consumer_and_relay_stop_even_when_the_cancel_races_a_redis_write(
        settings: Settings, infra) -> None:  # noqa: ANN001
    """Python 3.11's wait_for (inside redis-py's writes) can drop a cancel; shutdown must still finish."""
    from services.api.db import outbox
    from shared.events.outbox import OutboxRelay, publish

    engine, redis = infra
    stream = events_stream(settings.stream_prefix, "api")
    for attempt in range(3):
        handled = asyncio.Event()
        consumer = StreamConsumer(redis=redis, session_factory=create_session_factory(engine), inbox=inbox,
                                  group=f"cancel-{attempt}", streams=[stream],
                                  handlers={"system.ping": ping_handler(received_pings)},
                                  dlq_stream=dead_letter_stream(settings.stream_prefix, "cancel"), block_ms=50,
                                  on_handled=lambda *_: handled.set())
        await consumer.ensure_groups()
        relay = OutboxRelay(engine, redis, outbox, poll_interval=0.05)
        tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
        async with create_session_factory(engine)() as session, session.begin():
            await publish(session, outbox, _ping(f"cancel {attempt}"), stream=stream)
        await asyncio.wait_for(handled.wait(), timeout=10)
        for task in tasks:  # cancel in the very loop iteration the consumer goes back to Redis
            task.cancel()
        done, _ = await asyncio.wait(tasks, timeout=10)
        assert len(done) == 2, "a cancelled consumer or relay kept running"
        assert all(task.cancelled() for task in tasks)
