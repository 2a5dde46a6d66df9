"""The event path: outbox -> relay -> Redis stream -> consumer group (inbox + handler commit), next to its ceiling.

    .venv/bin/python benchmarks/event_path.py [--events 5000] [--producers 8] [--repeat 1]

Uses PostgreSQL/Redis on 127.0.0.1 when they answer (or --database-url/--redis-url), else embedded ones; a
throwaway database and stream prefix, dropped afterwards. Rows:

  ceiling: bare Redis          one producer task XADDs (pipelined, like the relay) while one consumer task
                               XREADGROUPs and XACKs, same Redis, same process: what Redis + redis-py allow
  path: backlog drain          events already committed in the outbox; the real OutboxRelay and StreamConsumer
                               (worker's inbox + the system.ping handler's upsert, each committed) drain them
  path: backlog drain, batch 1 the same with XREADGROUP COUNT 1: one transaction and one XACK per event (what
                               the consumer did before it committed a whole read batch at once); --events/4 events
  path: live                   --producers tasks each commit one event per transaction (like API requests)
                               while relay and consumer run; latency = producer commit -> handler commit + ack

Everything runs in one process and event loop (like `quorum up`), so producers, relay and consumer share a core.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from services.api.db import outbox  # noqa: E402
from services.worker.db import inbox, received_pings  # noqa: E402
from shared.db import create_engine, create_session_factory  # noqa: E402
from shared.embedded import create_database, ensure_infrastructure, port_open  # noqa: E402
from shared.events.consumer import StreamConsumer, dead_letter_stream  # noqa: E402
from shared.events.envelope import new_event  # noqa: E402
from shared.events.outbox import OutboxRelay, events_stream, publish  # noqa: E402
from shared.migrations import upgrade  # noqa: E402
from shared.ping import ping_handler  # noqa: E402
from shared.redis import create_redis  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Tracker:
    """Commit and handled times per event id; `done` fires when every expected event was handled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.committed: dict[str, float] = {}
        self.handled: dict[str, float] = {}
        self.in_flight: list[str] = []
        self.done = asyncio.Event()

    def wrap(self, handler):  # noqa: ANN001, ANN201
        async def tracked(session, envelope) -> None:  # noqa: ANN001
            await handler(session, envelope)
            self.in_flight.append(envelope.id)
        return tracked

    def on_handled(self, _type: str, outcome: str) -> None:
        # called after the transaction committed and the entry was acknowledged
        now = time.perf_counter()
        if outcome == "handled":
            for event_id in self.in_flight:
                self.handled[event_id] = now
        self.in_flight.clear()
        if len(self.handled) >= self.expected:
            self.done.set()

    def latencies_ms(self) -> list[float]:
        return [(self.handled[i] - self.committed[i]) * 1000 for i in self.committed if i in self.handled]


async def bare_redis_ceiling(redis, prefix: str, n: int, batch: int) -> dict[str, float]:  # noqa: ANN001
    stream = f"{prefix}:ceiling"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    body = new_event("system.ping", {"message": "x"}, producer="api").to_stream_fields()

    async def produce() -> None:
        for start in range(0, n, batch):
            pipe = redis.pipeline(transaction=False)
            for _ in range(min(batch, n - start)):
                pipe.xadd(stream, body)
            ids = await pipe.execute()
            now = time.perf_counter()
            for mid in ids:
                sent[mid] = now
            await asyncio.sleep(0)

    async def consume() -> None:
        got = 0
        while got < n:
            response = await redis.xreadgroup("g", "c", {stream: ">"}, count=batch, block=1000)
            for _, messages in response or []:
                ids = [mid for mid, _ in messages]
                await redis.xack(stream, "g", *ids)
                now = time.perf_counter()
                latencies.extend((now - sent[mid]) * 1000 for mid in ids if mid in sent)
                got += len(ids)

    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await redis.delete(stream)
    return {"rate": n / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def make_pipeline(engine, redis, prefix: str, tracker: Tracker, batch: int):  # noqa: ANN001, ANN201
    relay = OutboxRelay(engine, redis, outbox, poll_interval=0.5)
    consumer = StreamConsumer(
        redis=redis, session_factory=create_session_factory(engine), inbox=inbox, group="worker",
        streams=[events_stream(prefix, "api")], handlers={"system.ping": tracker.wrap(ping_handler(received_pings))},
        dlq_stream=dead_letter_stream(prefix, "worker"), block_ms=1000, batch=batch, reclaim_idle_ms=30_000,
        on_handled=tracker.on_handled)
    return relay, consumer


async def stop(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def backlog_drain(engine, redis, prefix: str, n: int, batch: int) -> dict[str, float]:  # noqa: ANN001
    tracker = Tracker(n)
    sessions = create_session_factory(engine)
    stream = events_stream(prefix, "api")
    for start in range(0, n, 500):
        async with sessions() as session, session.begin():
            for _ in range(min(500, n - start)):
                await publish(session, outbox, new_event("system.ping", {"message": "backlog"}, producer="api"),
                              stream=stream)
    relay, consumer = make_pipeline(engine, redis, prefix, tracker, batch)
    await consumer.ensure_groups()
    started = time.perf_counter()
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    await asyncio.wait_for(tracker.done.wait(), timeout=600)
    elapsed = time.perf_counter() - started
    await stop(*tasks)
    return {"rate": n / elapsed}


async def live(engine, redis, prefix: str, n: int, producers: int, batch: int) -> dict[str, float]:  # noqa: ANN001
    tracker = Tracker(n)
    sessions = create_session_factory(engine)
    stream = events_stream(prefix, "api")
    relay, consumer = make_pipeline(engine, redis, prefix, tracker, batch)
    await consumer.ensure_groups()
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    await asyncio.sleep(0.5)  # let the relay's LISTEN connection come up before measuring (not synchronisation)

    async def produce(count: int) -> None:
        for _ in range(count):
            event = new_event("system.ping", {"message": "live"}, producer="api")
            async with sessions() as session, session.begin():
                await publish(session, outbox, event, stream=stream)
            tracker.committed[event.id] = time.perf_counter()

    started = time.perf_counter()
    share = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
    await asyncio.gather(*(produce(c) for c in share))
    await asyncio.wait_for(tracker.done.wait(), timeout=600)
    elapsed = time.perf_counter() - started
    await stop(*tasks)
    latencies = tracker.latencies_ms()
    return {"rate": n / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> list[tuple[str, dict[str, float]]]:
    engine = create_engine(database_url, pool_size=args.producers + 4)
    redis = create_redis(redis_url)
    prefix = f"bench-{secrets.token_hex(4)}"
    try:
        rows = []
        for attempt in range(args.repeat):
            rows.append(("ceiling: bare Redis XADD/XREADGROUP/XACK",
                         await bare_redis_ceiling(redis, f"{prefix}-{attempt}", args.events, args.batch)))
            rows.append(("path: backlog drain (relay + consumer)",
                         await backlog_drain(engine, redis, f"{prefix}-{attempt}b", args.events, args.batch)))
            rows.append(("path: backlog drain, consumer batch 1",
                         await backlog_drain(engine, redis, f"{prefix}-{attempt}s", args.events // 4, 1)))
            rows.append((f"path: live ({args.producers} producers, 1 event/txn)",
                         await live(engine, redis, f"{prefix}-{attempt}l", args.events, args.producers, args.batch)))
        return rows
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await engine.dispose()


def best(rows: list[tuple[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    chosen: dict[str, dict[str, float]] = {}
    for name, figures in rows:
        if name not in chosen or figures["rate"] > chosen[name]["rate"]:
            chosen[name] = figures
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100, help="consumer XREADGROUP count (QUORUM_CONSUMER_BATCH)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best rate of each row is reported")
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server (default: 127.0.0.1 or embedded)")
    parser.add_argument("--redis-url", help="Redis URL (default: 127.0.0.1:6379 or embedded)")
    args = parser.parse_args()

    admin_url = args.database_url or ("postgresql://postgres@127.0.0.1:5432/postgres"
                                      if port_open("127.0.0.1", 5432) else None)
    redis_url = args.redis_url or ("redis://127.0.0.1:6379/0" if port_open("127.0.0.1", 6379) else None)
    infra = ensure_infrastructure(admin_url, redis_url, Path(__file__).resolve().parents[1] / ".data" / "bench")
    db_name = f"quorum_bench_{secrets.token_hex(4)}"
    create_database(infra.database_url, db_name)
    base, _, query = infra.database_url.partition("?")
    database_url = f"{base.rsplit('/', 1)[0]}/{db_name}" + (f"?{query}" if query else "")
    try:
        upgrade("api", database_url)
        upgrade("worker", database_url)
        rows = best(asyncio.run(run(args, database_url, infra.redis_url)))
    finally:
        _drop_database(infra.database_url, db_name)
        infra.stop()

    ceiling = rows["ceiling: bare Redis XADD/XREADGROUP/XACK"]["rate"]
    print(f"\nevent path, {args.events} events per row, consumer batch {args.batch} "
          f"(postgres {infra.database_url.split('@')[-1]}, redis {infra.redis_url})\n")
    print(f"| {'row':<44} | {'events/s':>9} | {'x ceiling':>9} | {'p50 ms':>7} | {'p99 ms':>7} |")
    print(f"|{'-' * 46}|{'-' * 11}:|{'-' * 11}:|{'-' * 8}:|{'-' * 8}:|")
    for name, figures in rows.items():
        p50 = f"{figures['p50']:.2f}" if "p50" in figures else "-"
        p99 = f"{figures['p99']:.2f}" if "p99" in figures else "-"
        print(f"| {name:<44} | {figures['rate']:>9.0f} | {figures['rate'] / ceiling:>9.3f} | {p50:>7} | {p99:>7} |")


def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    from shared.db import asyncpg_dsn

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


if __name__ == "__main__":
    main()
