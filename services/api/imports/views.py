"""Import routes: POST streams the body into an operation (202), GET reports its progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from services.api.imports import service
from shared.auth.dependencies import require
from shared.auth.principal import Principal, Role
from shared.validation import PG_BIGINT_MAX

router = APIRouter(tags=["imports"])
MANAGERS = {Role.ORG_ADMIN, Role.PROJECT_MANAGER}


_FILE = {"type": "string", "format": "binary"}
IMPORT_BODY = {"required": True, "description": "The file itself as the raw body (not multipart), streamed; "
                                                "`Content-Encoding: gzip` is accepted",
               "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}},
                                                 "example": [{"data": {"text": "Call me at 555-0100"}}]},
                           "application/x-ndjson": {"schema": _FILE}, "text/csv": {"schema": _FILE}}}


@router.post("/projects/{project_id}/imports", status_code=202,
             summary="Bulk-import tasks (JSON array / Label Studio tasks, JSON Lines, CSV; optionally gzip)",
             responses={202: {"description": "operation queued; poll Location"}, 413: {}, 415: {}},
             openapi_extra={"requestBody": IMPORT_BODY})
async def create_import(project_id: str, request: Request, format: str | None = Query(None),
                        filename: str | None = Query(None, max_length=1000),
                        idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
                        principal: Principal = require("imports.create", roles=MANAGERS, project_param="project_id",
                                                       project_roles={Role.PROJECT_MANAGER})) -> JSONResponse:
    ctx = request.app.state.ctx
    op, replayed = await service.receive_import(
        ctx, principal, project_id, request.stream(), content_type=request.headers.get("content-type"),
        content_encoding=request.headers.get("content-encoding"),
        content_length=request.headers.get("content-length"), format_param=format, filename=filename,
        idempotency_key=idempotency_key)
    headers = {"Location": f"/api/v1/imports/{op.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(service.operation_view(op), status_code=202, headers=headers)


@router.get("/imports/{op_id}", summary="Status, counts, progress and per-row errors of an import")
async def get_import(op_id: str, request: Request, errors_limit: int = Query(100, ge=0, le=1000),
                     errors_after_row: int = Query(0, ge=0, le=PG_BIGINT_MAX),
                     wait: float = Query(0, ge=0, le=service.MAX_STATUS_WAIT,
                                         description="seconds to wait for the import to end before answering "
                                                     "(answers as soon as it ends; 0: at once)"),
                     principal: Principal = require("imports.view", roles="any", resource_params=("op_id",))
                     ) -> dict[str, Any]:
    return await service.watch_operation(request.app.state.ctx, principal, op_id, wait=wait,
                                         errors_limit=errors_limit, errors_after=errors_after_row)
