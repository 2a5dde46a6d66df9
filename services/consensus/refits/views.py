"""Refits on demand, their status, and the fitted models."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, status

from services.consensus.projects.views import manage_policy, project_for, view_policy
from services.consensus.refits import service
from shared.auth.principal import Principal
from shared.errors import NotFound

router = APIRouter(prefix="/projects/{project_id}/refits", tags=["refits"])


def run_out(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "project_id": str(row.project_id), "reason": row.reason, "status": row.status,
            "requested_by": row.requested_by, "requested_at": row.requested_at, "started_at": row.started_at,
            "finished_at": row.finished_at, "summary": row.summary, "error": row.error}


@router.post("", status_code=status.HTTP_202_ACCEPTED,
             summary="Queue a full refit of the project's models (returns the queued run; one queued run at a time)")
async def trigger_refit(project_id: str, request: Request,
                        principal: Principal = manage_policy("consensus.refits.create")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session, session.begin():
        config = await project_for(session, principal, project_id, manage=True)
        run = await service.request_refit(session, config.project_id, reason="manual",
                                          requested_by=principal.subject)
        return run_out(run)


@router.get("", summary="Recent refit runs and the current fitted model per control")
async def list_refits(project_id: str, request: Request,
                      principal: Principal = view_policy("consensus.refits.list")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        runs = await service.list_runs(session, config.project_id)
        models = await service.latest_fit_summary(session, config.project_id)
    return {"runs": [run_out(r) for r in runs], "models": models}


@router.get("/{run_id}", summary="One refit run")
async def get_refit(project_id: str, run_id: str, request: Request,
                    principal: Principal = view_policy("consensus.refits.view")) -> dict[str, Any]:
    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        raise NotFound("no such refit") from None
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        run = await service.get_run(session, config.project_id, rid)
    if run is None:
        raise NotFound("no such refit")
    return run_out(run)
