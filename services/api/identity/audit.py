"""Audit events of the identity domain: through the outbox, in the transaction of the change they record."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.events import publish_event
from services.api.identity.deps import Identity, RequestMeta
from shared.auth.principal import Principal
from shared.events.catalog import AuditRecorded


async def audit(session: AsyncSession, identity: Identity, meta: RequestMeta | None, *, action: str,
                outcome: str, resource_type: str, resource_id: Any = None, org_id: Any = None,
                actor: Principal | None = None, actor_id: Any = None, reason: str | None = None,
                details: dict[str, Any] | None = None) -> None:
    if actor is not None:
        actor_type, actor_id, token_id = ("worker_token" if actor.is_worker else "user"), actor.subject, actor.token_id
        org_id = org_id or actor.org_id
    else:
        actor_type, token_id = ("user" if actor_id else "anonymous"), None
    payload = AuditRecorded(
        actor_id=str(actor_id) if actor_id else None, actor_type=actor_type, token_id=token_id,
        org_id=str(org_id) if org_id else None, resource_type=resource_type,
        resource_id=str(resource_id) if resource_id else None, action=action, outcome=outcome, reason=reason,
        request_id=meta.request_id if meta else None, ip=meta.ip if meta else None,
        user_agent=meta.user_agent if meta else None, details=details or {})
    await publish_event(session, identity.ctx, "audit.recorded", payload, org_id=payload.org_id)
