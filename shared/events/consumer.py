"""At-least-once stream consumption with consumer groups, reclaim, dead-lettering and an inbox for idempotency."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events.cancellation import raise_if_cancel_requested
from shared.events.envelope import Envelope

log = logging.getLogger("quorum.events.consumer")

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


def dead_letter_stream(prefix: str, group: str) -> str:
    return f"{prefix}:dlq:{group}"


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    ignored: int = 0
    failed: int = 0
    dead_lettered: int = 0


class StreamConsumer:
    """One consumer in a group reading one or more streams.

    A message is acknowledged only after its handler's transaction (which also records the event id in the
    inbox) has committed. A crashed consumer's pending messages are reclaimed by any live consumer after
    `reclaim_idle_ms`; after `max_deliveries` they go to the dead-letter stream.
    """

    def __init__(self, *, redis: Redis, session_factory: async_sessionmaker[AsyncSession], inbox: sa.Table,
                 group: str, streams: list[str], handlers: dict[str, Handler], dlq_stream: str,
                 consumer: str | None = None, block_ms: int = 1000, batch: int = 100,
                 reclaim_idle_ms: int = 30_000, max_deliveries: int = 5,
                 on_handled: Callable[[str, str], None] | None = None,
                 after_commit: Callable[[], None] | None = None) -> None:
        self.redis = redis
        self.session_factory = session_factory
        self.inbox = inbox
        self.group = group
        self.streams = streams
        self.handlers = handlers
        self.dlq_stream = dlq_stream
        self.consumer = consumer or default_consumer_name()
        self.block_ms = block_ms
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.max_deliveries = max_deliveries
        self.on_handled = on_handled
        # e.g. wake this replica's outbox relay: what a handler staged is sendable now, no need to wait for the
        # NOTIFY to come back from PostgreSQL
        self.after_commit = after_commit
        self.stats = ConsumerStats()
        self._reclaim_cursor: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        await self.ensure_groups()
        loop = asyncio.get_running_loop()
        next_reclaim = 0.0
        while True:
            raise_if_cancel_requested()
            try:
                if loop.time() >= next_reclaim:
                    await self.reclaim_once()
                    next_reclaim = loop.time() + max(self.reclaim_idle_ms / 2000, 0.05)
                await self.read_once(block_ms=self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer loop error", extra={"group": self.group})
                await asyncio.sleep(1)

    async def read_once(self, block_ms: int | None = None) -> int:
        response = await self.redis.xreadgroup(self.group, self.consumer, {s: ">" for s in self.streams},
                                               count=self.batch, block=block_ms)
        count = 0
        for stream, messages in response or []:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            await self._process_batch(stream, messages)
            count += len(messages)
        return count

    async def reclaim_once(self) -> int:
        """Take over messages another (probably dead) consumer left pending for too long."""
        count = 0
        for stream in self.streams:
            start = self._reclaim_cursor.get(stream, "0-0")
            result = await self.redis.xautoclaim(stream, self.group, self.consumer, self.reclaim_idle_ms,
                                                 start_id=start, count=self.batch)
            next_start, messages = result[0], result[1]
            self._reclaim_cursor[stream] = next_start.decode() if isinstance(next_start, bytes) else next_start
            for message_id, fields in messages:
                if fields is None:  # deleted while pending
                    await self.redis.xack(stream, self.group, message_id)
                    continue
                deliveries = await self._delivery_count(stream, message_id)
                await self._process(stream, message_id, fields, deliveries=deliveries)
                count += 1
        return count

    async def _delivery_count(self, stream: str, message_id: str) -> int:
        info = await self.redis.xpending_range(stream, self.group, min=message_id, max=message_id, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    async def _prepare(self, stream: str, message_id: str, fields: dict, *,
                       deliveries: int) -> tuple[Envelope, Handler] | None:
        """The envelope and its handler, or None when the message was dead-lettered or is not ours to handle."""
        fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in fields.items()}
        if deliveries > self.max_deliveries:
            await self._dead_letter(stream, message_id, fields, f"gave up after {deliveries - 1} deliveries")
            return None
        try:
            envelope = Envelope.from_stream_fields(fields)
        except (KeyError, ValidationError, ValueError) as exc:
            await self._dead_letter(stream, message_id, fields, f"malformed envelope: {exc}")
            return None
        handler = self.handlers.get(envelope.type)
        if handler is None:
            self.stats.ignored += 1
            await self.redis.xack(stream, self.group, message_id)
            return None
        return envelope, handler

    async def _apply(self, session: AsyncSession, envelope: Envelope, handler: Handler) -> bool:
        """Record the event in the inbox and run its handler; False if the inbox already had it (a duplicate)."""
        inserted = await session.execute(
            pg_insert(self.inbox).values(consumer_group=self.group, event_id=envelope.id)
            .on_conflict_do_nothing().returning(self.inbox.c.event_id))
        if inserted.first() is None:
            return False
        await handler(session, envelope)
        return True

    async def _apply_batch(self, session: AsyncSession, items: list[tuple[Envelope, Handler]]) -> list[bool]:
        """`_apply` for many events with one inbox round trip: a multi-row insert says which ones are new."""
        inserted = await session.execute(
            pg_insert(self.inbox).values([{"consumer_group": self.group, "event_id": e.id} for e, _ in items])
            .on_conflict_do_nothing().returning(self.inbox.c.event_id))
        fresh = set(inserted.scalars())
        applied = []
        for envelope, handler in items:
            if envelope.id in fresh:
                fresh.discard(envelope.id)  # the same event twice in one batch: only the first applies
                await handler(session, envelope)
                applied.append(True)
            else:
                applied.append(False)
        return applied

    def _count(self, envelope: Envelope, applied: bool) -> None:
        if applied:
            self.stats.handled += 1
        else:
            self.stats.duplicates += 1
        if self.on_handled:
            self.on_handled(envelope.type, "handled")

    async def _process_batch(self, stream: str, messages: list) -> None:
        """First deliveries from one XREADGROUP: every handler in one transaction, one commit and one XACK for all
        (a commit per event costs a disk flush each). If anything in it fails, the batch rolls back and each
        message is handled on its own, so a bad event never holds back or undoes the others."""
        batch = []
        for message_id, fields in messages:
            prepared = await self._prepare(stream, message_id, fields, deliveries=1)
            if prepared is not None:
                batch.append((message_id, *prepared))
        if len(batch) > 1:
            try:
                async with self.session_factory() as session, session.begin():
                    applied = await self._apply_batch(session, [(e, h) for _, e, h in batch])
            except Exception:
                log.warning("event batch failed; handling its events one at a time",
                            extra={"group": self.group, "stream": stream, "size": len(batch)})
            else:
                self._committed()
                await self.redis.xack(stream, self.group, *[message_id for message_id, _, _ in batch])
                for (_, envelope, _), was_applied in zip(batch, applied, strict=True):
                    self._count(envelope, was_applied)
                return
        for message_id, envelope, handler in batch:
            await self._handle(stream, message_id, envelope, handler, deliveries=1)

    async def _process(self, stream: str, message_id: str, fields: dict, *, deliveries: int) -> None:
        prepared = await self._prepare(stream, message_id, fields, deliveries=deliveries)
        if prepared is not None:
            await self._handle(stream, message_id, *prepared, deliveries=deliveries)

    async def _handle(self, stream: str, message_id: str, envelope: Envelope, handler: Handler, *,
                      deliveries: int) -> None:
        try:
            async with self.session_factory() as session, session.begin():
                applied = await self._apply(session, envelope, handler)
        except Exception:
            self.stats.failed += 1
            log.exception("event handler failed; will be retried",
                          extra={"group": self.group, "event_id": envelope.id, "type": envelope.type,
                                 "deliveries": deliveries})
            if self.on_handled:
                self.on_handled(envelope.type, "failed")
            return
        self._committed()
        await self.redis.xack(stream, self.group, message_id)
        self._count(envelope, applied)

    def _committed(self) -> None:
        if self.after_commit is not None:
            self.after_commit()

    async def _dead_letter(self, stream: str, message_id: str, fields: dict, reason: str) -> None:
        entry = dict(fields)
        entry.update({"dlq_source_stream": stream, "dlq_source_id": message_id, "dlq_group": self.group,
                      "dlq_reason": reason[:2000]})
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.dlq_stream, entry)
        pipe.xack(stream, self.group, message_id)
        await pipe.execute()
        self.stats.dead_lettered += 1
        log.error("event dead-lettered", extra={"group": self.group, "stream": stream, "message_id": message_id,
                                                "reason": reason[:200]})
        if self.on_handled:
            self.on_handled(fields.get("type", "unknown"), "dead_lettered")


async def list_dead_letters(redis: Redis, dlq_stream: str, count: int = 100) -> list[tuple[str, dict]]:
    entries = await redis.xrange(dlq_stream, count=count)
    return [(mid.decode() if isinstance(mid, bytes) else mid,
             {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in f.items()}) for mid, f in entries]


async def replay_dead_letters(redis: Redis, dlq_stream: str, ids: list[str] | None = None) -> int:
    """Put dead letters back on their source stream (after the bug is fixed) and drop them from the DLQ."""
    replayed = 0
    for message_id, fields in await list_dead_letters(redis, dlq_stream, count=10_000):
        if ids and message_id not in ids:
            continue
        source = fields["dlq_source_stream"]
        original = {k: v for k, v in fields.items() if not k.startswith("dlq_")}
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(source, original)
        pipe.xdel(dlq_stream, message_id)
        await pipe.execute()
        replayed += 1
    return replayed


async def trim_acknowledged(redis: Redis, stream: str) -> int:
    """Trim only entries every group has acknowledged; never drops an unacknowledged entry."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return 0
    if not groups:
        return 0
    floor: str | None = None
    for group in groups:
        name = group["name"]
        pending = await redis.xpending(stream, name)
        candidate = pending["min"] if pending and pending.get("pending") else group["last-delivered-id"]
        candidate = candidate.decode() if isinstance(candidate, bytes) else candidate
        if floor is None or _id_key(candidate) < _id_key(floor):
            floor = candidate
    if floor is None or floor == "0-0":
        return 0
    return await redis.xtrim(stream, minid=floor, approximate=False)


def _id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)
