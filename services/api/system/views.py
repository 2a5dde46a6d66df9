"""Operational routes of the api service."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from services.api.events import publish_event
from shared.auth.dependencies import require
from shared.auth.principal import Role
from shared.events.catalog import SystemPing
from shared.validation import NulFreeModel

router = APIRouter(prefix="/system", tags=["system"])


class PingRequest(NulFreeModel):
    message: str = Field(default="ping", max_length=200)


class PingAccepted(BaseModel):
    event_id: str


@router.post("/pings", status_code=status.HTTP_202_ACCEPTED, response_model=PingAccepted,
             summary="Publish a system.ping event that every other service records (proves the event path)",
             dependencies=[require("system.ping", roles={Role.ORG_ADMIN})])
async def send_ping(body: PingRequest, request: Request) -> PingAccepted:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        envelope = await publish_event(session, ctx, "system.ping", SystemPing(message=body.message))
    return PingAccepted(event_id=envelope.id)
