"""A real consumer process whose handler stops between reading an event and acknowledging it.

    python -m tests.support.blocking_consumer DATABASE_URL REDIS_URL STREAM GROUP CONSUMER MARKER_KEY RELEASE_KEY

It joins GROUP on STREAM with the worker service's inbox and applies the system.ping effect (an upsert into
worker's received_pings) inside the handler transaction; then it sets MARKER_KEY to the event id and blocks
until RELEASE_KEY is pushed — which a crash test never does: it SIGKILLs the process instead, so the effect
is never committed and the entry is never acknowledged.
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from services.worker.db import inbox, received_pings
from shared.db import create_engine, create_session_factory
from shared.events.consumer import StreamConsumer, dead_letter_stream
from shared.ping import ping_handler
from shared.redis import create_redis


async def main(database_url: str, redis_url: str, stream: str, group: str, consumer: str, marker_key: str,
               release_key: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    redis = create_redis(redis_url)
    control = Redis.from_url(redis_url, decode_responses=True)  # no socket timeout: BLPOP waits indefinitely
    record_ping = ping_handler(received_pings)

    async def apply_then_block(session, envelope) -> None:  # noqa: ANN001
        await record_ping(session, envelope)
        await session.flush()
        await control.set(marker_key, envelope.id)
        await control.blpop([release_key], timeout=0)

    reader = StreamConsumer(redis=redis, session_factory=create_session_factory(engine), inbox=inbox, group=group,
                            streams=[stream], handlers={"system.ping": apply_then_block},
                            dlq_stream=dead_letter_stream(stream, group), consumer=consumer, block_ms=100)
    await reader.ensure_groups()
    await control.set(f"{marker_key}:ready", "1")
    while True:
        await reader.read_once(block_ms=100)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
