"""What the consensus service publishes, staged in the outbox in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.db import outbox
from shared.events.envelope import Envelope
from shared.events.outbox import notify_channel

PRODUCER = "consensus"


async def publish_many(session: AsyncSession, envelopes: Sequence[Envelope | dict[str, Any]], *, stream: str) -> None:
    """`shared.events.outbox.publish` for a batch: one insert and one NOTIFY, whatever the batch size.
    An envelope is an `Envelope` or its JSON-ready dict (as `results.service.updated_envelopes` builds them)."""
    if not envelopes:
        return
    rows = [{"event_id": e.id, "stream": stream, "type": e.type, "envelope": e.model_dump_json()}
            if isinstance(e, Envelope) else
            {"event_id": e["id"], "stream": stream, "type": e["type"], "envelope": orjson.dumps(e).decode()}
            for e in envelopes]
    # one round trip: the insert and the NOTIFY (delivered on commit) in one statement
    await session.execute(sa.text(f"""
        WITH staged AS (
            INSERT INTO {outbox.schema}.outbox (event_id, stream, type, envelope)
            SELECT event_id, stream, type, envelope
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(event_id text, stream text, type text, envelope text)
            RETURNING 1)
        SELECT pg_notify(:channel, '') FROM (SELECT count(*) FROM staged) AS s"""),
        {"rows": orjson.dumps(rows).decode(), "channel": notify_channel(outbox)})
