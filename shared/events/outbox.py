"""Transactional outbox: the event row commits or rolls back with the change it announces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import asyncpg_dsn
from shared.events.cancellation import raise_if_cancel_requested
from shared.events.envelope import Envelope

log = logging.getLogger("quorum.events.outbox")


def events_stream(prefix: str, producer: str) -> str:
    return f"{prefix}:events:{producer}"


def notify_channel(table: sa.Table) -> str:
    return f"{table.schema}_outbox"


async def publish(session: AsyncSession, table: sa.Table, envelope: Envelope, *, stream: str) -> None:
    """Stage an event in the caller's transaction; the relay sends it after commit."""
    await session.execute(sa.insert(table).values(
        event_id=envelope.id, stream=stream, type=envelope.type, envelope=envelope.model_dump_json()))
    # NOTIFY is delivered only on commit, so the relay wakes exactly when there is something to send.
    await session.execute(sa.select(sa.func.pg_notify(notify_channel(table), "")))


class OutboxRelay:
    """Moves committed outbox rows to their Redis stream. Safe to run in every replica (SKIP LOCKED)."""

    def __init__(self, engine: AsyncEngine, redis: Redis, table: sa.Table, *, poll_interval: float = 0.5,
                 batch: int = 500, on_published: Callable[[int], None] | None = None,
                 retention_seconds: int = 3600) -> None:
        self.engine = engine
        self.redis = redis
        self.table = table
        self.poll_interval = poll_interval
        self.batch = batch
        self.on_published = on_published
        self.retention_seconds = retention_seconds
        self._wake = asyncio.Event()
        t = f"{table.schema}.{table.name}" if table.schema else table.name
        # Claim and mark in one statement; the XADDs happen before the commit. The commit need not wait for the
        # disk: if a crash loses the marking, the rows are sent again, and an event delivered twice is what
        # every consumer already absorbs (at-least-once delivery, inbox) - nothing is lost or sent early.
        self._claim = sa.text(f"""
            WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
            UPDATE {t} AS o SET published_at = now()
            FROM (SELECT seq FROM {t} WHERE published_at IS NULL ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED) AS s,
                 relaxed
            WHERE o.seq = s.seq
            RETURNING o.seq, o.stream, o.type, o.envelope""")

    def kick(self) -> None:
        """Something was just committed to the outbox in this process: send it now."""
        self._wake.set()

    async def relay_once(self) -> int:
        async with self.engine.begin() as conn:
            rows = sorted((await conn.execute(self._claim, {"n": self.batch})).all(), key=lambda r: r.seq)
            if not rows:
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(row.stream, {"type": row.type, "envelope": row.envelope})
            await pipe.execute()  # a failure rolls the marking back: the rows stay unpublished
        if self.on_published:
            self.on_published(len(rows))
        return len(rows)

    async def purge_published(self) -> int:
        t = self.table
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(t).where(
                t.c.published_at < sa.func.now() - sa.text(f"interval '{int(self.retention_seconds)} seconds'")))
            return result.rowcount or 0

    async def _listen(self, dsn: str) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(notify_channel(self.table), lambda *_: self._wake.set())
            return conn
        except Exception:  # polling alone still delivers; LISTEN only lowers latency
            log.warning("outbox LISTEN unavailable; relying on polling", exc_info=True)
            return None

    async def run(self) -> None:
        dsn = asyncpg_dsn(self.engine.url.render_as_string(hide_password=False))
        listener = await self._listen(dsn)
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                raise_if_cancel_requested()
                self._wake.clear()
                try:
                    while await self.relay_once() >= self.batch:
                        pass
                    if loop.time() - last_purge > 60:
                        await self.purge_published()
                        last_purge = loop.time()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
