"""Consensus results: per task (with history) and in bulk (paged, filterable)."""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from services.consensus.projects.views import project_for, view_policy
from services.consensus.results import service
from shared.auth.principal import Principal
from shared.errors import BadRequest, NotFound

router = APIRouter(prefix="/projects/{project_id}", tags=["consensus results"])


def _encode_cursor(after: tuple[str, str] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(after).encode()).decode() if after else None


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        task, control = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(task), str(control)
    except (ValueError, TypeError):
        raise BadRequest("cursor is not one this API returned", type="invalid-cursor") from None


@router.get("/tasks/{task_id}", summary="The consensus of one task (every control)")
async def task_consensus(project_id: str, task_id: str, request: Request, history: bool = False,
                         principal: Principal = view_policy("consensus.results.view")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        results = await service.task_results(session, config.project_id, task_id)
        if not results:
            raise NotFound("no consensus for this task yet")
        out: dict[str, Any] = {"project_id": str(config.project_id), "task_id": task_id, "results": results}
        if history:
            out["history"] = await service.task_history(session, config.project_id, task_id)
        return out


@router.get("/results", summary="Consensus of every task, paged; filter low-confidence tasks or by status")
async def bulk_consensus(project_id: str, request: Request, control: str | None = None,
                         low_confidence: bool | None = None,
                         status: Literal["resolved", "needs_more_labels", "insufficient"] | None = None,
                         limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                         principal: Principal = view_policy("consensus.results.list")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        items, after = await service.list_results(session, config.project_id, control=control,
                                                  low_confidence=low_confidence, status=status,
                                                  after=_decode_cursor(cursor), limit=limit)
    return {"items": items, "next_cursor": _encode_cursor(after)}
