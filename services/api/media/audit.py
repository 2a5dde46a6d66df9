"""Audit events for media access and erasure, staged in the caller's transaction (outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.events import publish_event
from shared.app import ServiceContext
from shared.auth.principal import Principal
from shared.events.catalog import AuditRecorded
from shared.observability import current_request_id


@dataclass(frozen=True)
class RequestMeta:
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> RequestMeta:
        agent = request.headers.get("user-agent")
        return cls(request_id=current_request_id(), ip=request.client.host if request.client else None,
                   user_agent=agent[:300] if agent else None)


@dataclass(frozen=True)
class Actor:
    """Who acted: a verified principal, or the holder of a signed link minted by `link_issued_by`."""

    principal: Principal | None = None
    link_issued_by: str | None = None

    @property
    def id(self) -> str | None:
        return self.principal.subject if self.principal else self.link_issued_by

    @property
    def type(self) -> Literal["user", "worker_token", "service", "anonymous"]:
        if self.principal is None:
            return "anonymous"
        return "worker_token" if self.principal.kind == "worker" else "user"


async def record(session: AsyncSession, ctx: ServiceContext | str, *, actor: Actor, org_id: str,
                 project_id: str | None, resource_type: str, resource_id: str | None, action: str,
                 outcome: Literal["success", "failure", "denied"], meta: RequestMeta | None = None,
                 reason: str | None = None, details: dict[str, Any] | None = None) -> None:
    meta = meta or RequestMeta()
    extra = dict(details or {})
    if actor.principal is None and actor.link_issued_by:
        extra["via"] = "signed_link"
        extra["link_issued_by"] = actor.link_issued_by
    payload = AuditRecorded(
        actor_id=actor.id, actor_type=actor.type,
        token_id=actor.principal.token_id if actor.principal else None,
        org_id=org_id, resource_type=resource_type, resource_id=resource_id, action=action, outcome=outcome,
        reason=reason, request_id=meta.request_id, ip=meta.ip, user_agent=meta.user_agent, details=extra)
    await publish_event(session, ctx, "audit.recorded", payload, org_id=org_id, project_id=project_id)
