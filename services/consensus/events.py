"""What the consensus service publishes, staged in the outbox in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.db import outbox
from shared.events.envelope import Envelope
from shared.events.outbox import notify_channel

PRODUCER = "consensus"


async def publish_many(session: AsyncSession, envelopes: Sequence[Envelope], *, stream: str) -> None:
    """`shared.events.outbox.publish` for a batch: one insert and one NOTIFY, whatever the batch size."""
    if not envelopes:
        return
    await session.execute(sa.insert(outbox), [
        {"event_id": e.id, "stream": stream, "type": e.type, "envelope": e.model_dump_json()} for e in envelopes])
    await session.execute(sa.select(sa.func.pg_notify(notify_channel(outbox), "")))
