"""Publishing from the api service: always through its outbox, inside the caller's transaction."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import outbox
from shared.app import ServiceContext
from shared.events import Envelope, new_event
from shared.events.outbox import events_stream
from shared.events.outbox import publish as stage


async def publish_event(session: AsyncSession, ctx: ServiceContext | str, type: str, payload: BaseModel | dict,
                        *, org_id: str | None = None, project_id: str | None = None) -> Envelope:
    """`ctx` may be the service context or just the stream prefix (for code running outside a request)."""
    prefix = ctx if isinstance(ctx, str) else ctx.settings.stream_prefix
    envelope = new_event(type, payload, producer="api", org_id=org_id, project_id=project_id)
    await stage(session, outbox, envelope, stream=events_stream(prefix, "api"))
    return envelope
