"""A stream consumer that handles runs of annotation.submitted events as one batch.

At hundreds of submissions per second, one transaction per event spends its time in round trips. Events of
a batchable type that arrive together are handled in one transaction: one inbox insert for all their ids (a
duplicate delivery is skipped as in `StreamConsumer`), one call of the batch handler, one commit, one XACK.
If the batch fails, its events are retried one by one through the ordinary path, so one bad event never
holds up the others and still ends in the dead-letter stream after `max_deliveries`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.consumer import StreamConsumer
from shared.events.envelope import Envelope

log = logging.getLogger("quorum.consensus.consumer")

BatchHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[Any]]


class BatchingConsumer(StreamConsumer):
    def __init__(self, *, batch_handlers: dict[str, BatchHandler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_handlers = batch_handlers
        # one statement whatever the batch size (a multi-row VALUES compiles anew for every row count)
        self._claim = sa.text(f"""
            INSERT INTO {self.inbox.schema}.{self.inbox.name} (consumer_group, event_id)
            SELECT :group, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING RETURNING event_id""")

    async def read_once(self, block_ms: int | None = None) -> int:
        response = await self.redis.xreadgroup(self.group, self.consumer, {s: ">" for s in self.streams},
                                               count=self.batch, block=block_ms)
        count = 0
        for stream, messages in response or []:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            run: list[tuple[str, dict, Envelope]] = []
            for message_id, fields in messages:
                count += 1
                fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                          for k, v in fields.items()}
                envelope = self._batchable(fields)
                if envelope is not None and (not run or run[0][2].type == envelope.type):
                    run.append((message_id, fields, envelope))
                    continue
                await self._flush(stream, run)
                run = []
                if envelope is not None:
                    run.append((message_id, fields, envelope))
                else:
                    await self._process(stream, message_id, fields, deliveries=1)
            await self._flush(stream, run)
        return count

    def _batchable(self, fields: dict) -> Envelope | None:
        if fields.get("type") not in self.batch_handlers:
            return None
        try:
            return Envelope.from_stream_fields(fields)
        except (KeyError, ValidationError, ValueError):
            return None  # the ordinary path dead-letters it

    async def _flush(self, stream: str, run: list[tuple[str, dict, Envelope]]) -> None:
        if not run:
            return
        handler = self.batch_handlers[run[0][2].type]
        try:
            async with self.session_factory() as session, session.begin():
                ids = list(dict.fromkeys(e.id for _, _, e in run))
                inserted = await session.execute(self._claim, {"group": self.group, "ids": ids})
                fresh = set(inserted.scalars().all())
                todo, seen = [], set()
                for _, _, e in run:
                    if e.id in fresh and e.id not in seen:
                        seen.add(e.id)
                        todo.append(e)
                if todo:
                    await handler(session, todo)
        except Exception:
            log.warning("batch of %d %s events failed; retrying them one by one", len(run), run[0][2].type,
                        exc_info=True)
            for message_id, fields, _ in run:
                await self._process(stream, message_id, fields, deliveries=1)
            return
        self._committed()
        self.stats.handled += len(todo)
        self.stats.duplicates += len(run) - len(todo)
        await self.redis.xack(stream, self.group, *[m for m, _, _ in run])
        if self.on_handled:
            for _, _, e in run:
                self.on_handled(e.type, "handled" if e.id in seen else "duplicate")
