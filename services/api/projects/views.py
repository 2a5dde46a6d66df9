"""Project routes: translate HTTP to `services.api.projects.service`."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from services.api.keys.service import keyring
from services.api.projects import service
from services.api.projects.schemas import ProjectCreate, ProjectList, ProjectOut, ProjectUpdate, SchemaVersionOut
from shared.auth.dependencies import require
from shared.auth.principal import Principal, Role

router = APIRouter(prefix="/projects", tags=["projects"])

MANAGERS = {Role.ORG_ADMIN, Role.PROJECT_MANAGER}
PROJECT_ROLES = {Role.PROJECT_MANAGER, Role.REVIEWER, Role.ANNOTATOR}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut,
             summary="Create a project with its label schema (version 1)")
async def create_project(body: ProjectCreate, request: Request,
                         principal: Principal = require("projects.create", roles=MANAGERS)) -> ProjectOut:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        return await service.create_project(session, keyring(ctx), principal, body, events=ctx)


@router.get("", response_model=ProjectList, summary="Projects of the caller's organisation it can see")
async def list_projects(request: Request, limit: int = Query(50, ge=1, le=200), cursor: str | None = None,
                        principal: Principal = require("projects.list", roles="any", workers=True)) -> ProjectList:
    async with request.app.state.ctx.session_factory() as session:
        items, next_cursor = await service.list_projects(session, principal, limit=limit, cursor=cursor)
    return ProjectList(items=items, next_cursor=next_cursor)


@router.get("/{project_id}", response_model=ProjectOut, summary="A project with its current label schema")
async def get_project(project_id: str, request: Request,
                      principal: Principal = require("projects.view", roles="any", project_param="project_id",
                                                     project_roles=PROJECT_ROLES, workers=True)) -> ProjectOut:
    async with request.app.state.ctx.session_factory() as session:
        project = await service.get_project(session, principal, project_id)
        return service.to_out(project, await service.current_schema(session, project))


@router.patch("/{project_id}", response_model=ProjectOut,
              summary="Change settings; a changed label schema becomes a new schema version")
async def update_project(project_id: str, body: ProjectUpdate, request: Request,
                         principal: Principal = require("projects.update", roles=MANAGERS, project_param="project_id",
                                                        project_roles={Role.PROJECT_MANAGER})) -> ProjectOut:
    ctx = request.app.state.ctx
    async with ctx.session_factory() as session, session.begin():
        return await service.update_project(session, principal, project_id, body, events=ctx)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Archive a project")
async def archive_project(project_id: str, request: Request,
                          principal: Principal = require("projects.archive", roles=MANAGERS,
                                                         project_param="project_id",
                                                         project_roles={Role.PROJECT_MANAGER})) -> Response:
    async with request.app.state.ctx.session_factory() as session, session.begin():
        await service.archive_project(session, principal, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{project_id}/schema-versions", response_model=list[SchemaVersionOut],
            summary="Every label schema version of the project")
async def schema_versions(project_id: str, request: Request,
                          principal: Principal = require("projects.schema_versions", roles="any",
                                                         project_param="project_id", project_roles=PROJECT_ROLES,
                                                         workers=True)) -> list[SchemaVersionOut]:
    async with request.app.state.ctx.session_factory() as session:
        return await service.list_schema_versions(session, principal, project_id)
