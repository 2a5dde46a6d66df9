"""The outbox: an event reaches the stream exactly when the change it announces commits."""

from __future__ import annotations

import sqlalchemy as sa

from services.api.db import outbox
from services.api.events import publish_event
from shared.config import Settings
from shared.db import create_engine, create_session_factory
from shared.events.envelope import Envelope
from shared.events.outbox import OutboxRelay, events_stream
from shared.redis import create_redis


class Rollback(Exception):
    pass


async def test_committed_change_is_published_exactly_once_and_rolled_back_one_never(settings: Settings) -> None:
    engine = create_engine(settings.database_url, pool_size=2)
    redis = create_redis(settings.redis_url)
    sessions = create_session_factory(engine)
    stream = events_stream(settings.stream_prefix, "api")
    relay = OutboxRelay(engine, redis, outbox)
    try:
        async with sessions() as session, session.begin():
            committed = await publish_event(session, settings.stream_prefix, "system.ping", {"message": "kept"})
            # the change the event announces, in the same transaction
            await session.execute(sa.text("CREATE TEMP TABLE change_marker (x int) ON COMMIT DROP"))

        try:
            async with sessions() as session, session.begin():
                rolled_back = await publish_event(session, settings.stream_prefix, "system.ping",
                                                  {"message": "discarded"})
                raise Rollback
        except Rollback:
            pass

        assert await redis.xlen(stream) == 0, "nothing reaches the stream before the relay runs"
        relayed = 0
        while (n := await relay.relay_once()) > 0:  # other tests' apps may share the outbox table
            relayed += n
        assert relayed >= 1
        assert await relay.relay_once() == 0, "a second relay pass sends nothing again"

        entries = await redis.xrange(stream)
        events = [Envelope.from_stream_fields(fields) for _, fields in entries]
        ids = [e.id for e in events]
        assert ids.count(committed.id) == 1
        assert rolled_back.id not in ids
        mine = next(e for e in events if e.id == committed.id)
        assert mine.type == "system.ping" and mine.payload == {"message": "kept"} and mine.producer == "api"

        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox.c.event_id, outbox.c.published_at)
                                       .where(outbox.c.event_id.in_([committed.id, rolled_back.id])))).all()
        assert [(r.event_id, r.published_at is not None) for r in rows] == [(committed.id, True)]
    finally:
        await redis.delete(stream)
        await redis.aclose()
        await engine.dispose()
