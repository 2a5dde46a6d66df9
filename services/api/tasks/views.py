"""Task read routes: redacted data only, every read audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from services.api.keys.service import data_key_store
from services.api.tasks import service
from shared.auth.dependencies import require
from shared.auth.principal import Principal, Role
from shared.observability import current_request_id
from shared.validation import PG_INTEGER_MAX, NulFreeStr

router = APIRouter(tags=["tasks"])
PROJECT_ROLES = {Role.PROJECT_MANAGER, Role.REVIEWER, Role.ANNOTATOR}


def access_meta(request: Request) -> service.AccessMeta:
    ua = request.headers.get("user-agent")
    return service.AccessMeta(request_id=current_request_id(), ip=request.client.host if request.client else None,
                              user_agent=ua[:200] if ua else None)


@router.get("/tasks/{task_id}", summary="One task: decrypted, PII-redacted data and predictions (audited)")
async def get_task(task_id: str, request: Request,
                   principal: Principal = require("tasks.read", roles="any", workers=True, scopes={"tasks:read"},
                                                  resource_params=("task_id",))) -> dict[str, Any]:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        return await service.read_task(session, ctx, data_key_store(ctx), principal, task_id, access_meta(request))


@router.get("/tasks/{task_id}/original",
            summary="The unredacted original, if the project keeps originals (org admins only, audited)")
async def get_task_original(task_id: str, request: Request,
                            principal: Principal = require("tasks.read_original", roles={Role.ORG_ADMIN},
                                                           resource_params=("task_id",))) -> dict[str, Any]:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        return await service.read_original(session, ctx, data_key_store(ctx), principal, task_id,
                                           access_meta(request))


@router.get("/projects/{project_id}/tasks",
            summary="Tasks of a project, filtered; with include_data=true the redacted data too (audited)")
async def list_tasks(project_id: str, request: Request, limit: int = Query(50, ge=1, le=500),
                     cursor: str | None = None, import_id: str | None = None, has_pii: bool | None = None,
                     schema_version: int | None = Query(None, ge=1, le=PG_INTEGER_MAX),
                     pseudonym: NulFreeStr | None = Query(None, max_length=100), include_data: bool = False,
                     principal: Principal = require("tasks.list", roles="any", workers=True, scopes={"tasks:read"},
                                                    project_param="project_id", project_roles=PROJECT_ROLES)
                     ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        return await service.list_tasks(session, ctx, data_key_store(ctx), principal, project_id,
                                        access_meta(request), limit=limit, cursor=cursor, import_id=import_id,
                                        has_pii=has_pii, schema_version=schema_version, pseudonym=pseudonym,
                                        include_data=include_data)
