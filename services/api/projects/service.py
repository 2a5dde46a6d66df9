"""Projects: create, read, update (a changed label schema becomes a new version), list."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.keys.service import new_project_secret
from services.api.projects.models import LabelSchemaVersion, Project
from services.api.projects import policy
from services.api.projects.schemas import (
    LabelSchema,
    PiiSettings,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    SchemaVersionOut,
)
from services.api.events import publish_event
from shared.app import ServiceContext
from shared.auth.principal import Principal
from shared.crypto import KeyRing
from shared.events.catalog import ControlSpec, ProjectConfigured
from shared.errors import BadRequest, Forbidden, NotFound, Unprocessable
from services.api.ids import uuid_or_404




async def get_project(session: AsyncSession, principal: Principal, project_id: Any, *,
                      for_update: bool = False) -> Project:
    """The project if the caller can see it; 404 otherwise (other organisations' projects do not exist)."""
    stmt = sa.select(Project).where(Project.id == uuid_or_404(project_id, "project"), Project.archived_at.is_(None),
                                    Project.org_id == uuid_or_404(principal.data_org_id, "project"))
    if for_update:
        stmt = stmt.with_for_update()
    project = (await session.execute(stmt)).scalar_one_or_none()
    if project is None or not policy.can_view(principal, project) or not policy.vendor_allowed(principal, project):
        raise NotFound("no such project")
    return project


async def current_schema(session: AsyncSession, project: Project) -> LabelSchema:
    return LabelSchema.model_validate(await schema_document(session, project.id, project.schema_version))


async def schema_document(session: AsyncSession, project_id: uuid.UUID, version: int) -> dict[str, Any]:
    doc = (await session.execute(
        sa.select(LabelSchemaVersion.label_schema)
        .where(LabelSchemaVersion.project_id == project_id, LabelSchemaVersion.version == version))).scalar_one()
    return doc


def to_out(project: Project, schema: LabelSchema) -> ProjectOut:
    return ProjectOut(id=project.id, org_id=project.org_id, name=project.name, description=project.description,
                      instructions=project.instructions, schema_version=project.schema_version,
                      label_schema=schema, overlap=project.overlap, consensus=project.consensus,
                      pii=project.pii, allowed_vendor_ids=project.allowed_vendor_ids,
                      created_at=project.created_at, updated_at=project.updated_at)


def configuration(project: Project, schema: LabelSchema) -> ProjectConfigured:
    """The `project.configured` payload: what the consensus and distribution services need to know."""
    controls = {c.name: ControlSpec(label_type=c.type, classes=list(c.options) if hasattr(c, "options") else None)
                for c in schema.controls}
    consensus = project.consensus or {}
    return ProjectConfigured(project_id=str(project.id), schema_version=project.schema_version,
                             overlap=project.overlap, consensus_method=consensus.get("method", "default"),
                             target_confidence=consensus.get("target_confidence", 0.8),
                             max_labels=consensus.get("max_labels", 5), controls=controls)


async def announce_configuration(session: AsyncSession, events: ServiceContext | str, project: Project,
                                 schema: LabelSchema) -> None:
    await publish_event(session, events, "project.configured", configuration(project, schema),
                        org_id=str(project.org_id), project_id=str(project.id))


async def create_project(session: AsyncSession, keyring: KeyRing, principal: Principal,
                         body: ProjectCreate, *, events: ServiceContext | str | None = None) -> ProjectOut:
    if not policy.can_create_project(principal):
        raise Forbidden("only organisation admins and project managers create projects")
    project_id = uuid.uuid4()
    project = Project(id=project_id, org_id=uuid.UUID(principal.org_id), name=body.name,
                      description=body.description, instructions=body.instructions, overlap=body.overlap,
                      consensus=body.consensus.model_dump(mode="json"), pii=body.pii.model_dump(mode="json"),
                      allowed_vendor_ids=[str(v) for v in body.allowed_vendor_ids], schema_version=1,
                      secret_sealed=new_project_secret(keyring, project_id), created_by=principal.subject)
    session.add(project)
    await session.flush()
    session.add(LabelSchemaVersion(project_id=project_id, version=1,
                                   label_schema=body.label_schema.model_dump(mode="json"),
                                   created_by=principal.subject))
    await session.flush()
    await session.refresh(project)
    if events is not None:
        await announce_configuration(session, events, project, body.label_schema)
    return to_out(project, body.label_schema)


async def update_project(session: AsyncSession, principal: Principal, project_id: Any,
                         body: ProjectUpdate, *, events: ServiceContext | str | None = None) -> ProjectOut:
    project = await get_project(session, principal, project_id, for_update=True)
    if not policy.can_manage(principal, project):
        raise Forbidden("your role does not allow changing this project")
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise BadRequest("nothing to change")
    schema = await current_schema(session, project)
    if body.label_schema is not None and body.label_schema != schema:
        project.schema_version += 1
        session.add(LabelSchemaVersion(project_id=project.id, version=project.schema_version,
                                       label_schema=body.label_schema.model_dump(mode="json"),
                                       created_by=principal.subject))
        schema = body.label_schema
    for name in ("name", "description", "instructions", "overlap"):
        if name in changes and changes[name] is not None:
            setattr(project, name, changes[name])
    if body.consensus is not None:
        project.consensus = body.consensus.model_dump(mode="json")
    if body.pii is not None:
        project.pii = body.pii.model_dump(mode="json")
    if body.allowed_vendor_ids is not None:
        project.allowed_vendor_ids = [str(v) for v in body.allowed_vendor_ids]
    if project.consensus.get("max_labels", 1) < project.overlap:
        raise Unprocessable("consensus.max_labels must be at least overlap")
    project.updated_at = sa.func.now()
    await session.flush()
    await session.refresh(project)
    if events is not None and changes.keys() & {"label_schema", "overlap", "consensus"}:
        await announce_configuration(session, events, project, schema)
    return to_out(project, schema)


async def archive_project(session: AsyncSession, principal: Principal, project_id: Any) -> None:
    project = await get_project(session, principal, project_id, for_update=True)
    if not policy.can_manage(principal, project):
        raise Forbidden("your role does not allow archiving this project")
    project.archived_at = sa.func.now()


async def list_projects(session: AsyncSession, principal: Principal, *, limit: int = 50,
                        cursor: str | None = None) -> tuple[list[ProjectOut], str | None]:
    stmt = (sa.select(Project, LabelSchemaVersion.label_schema)
            .join(LabelSchemaVersion, sa.and_(LabelSchemaVersion.project_id == Project.id,
                                              LabelSchemaVersion.version == Project.schema_version))
            .where(Project.org_id == uuid_or_404(principal.data_org_id, "organisation"), Project.archived_at.is_(None))
            .order_by(Project.id).limit(limit + 1))
    if cursor:
        stmt = stmt.where(Project.id > uuid_or_404(cursor, "cursor"))
    items = []
    rows = (await session.execute(stmt)).all()
    for project, doc in rows[:limit]:
        if policy.can_view(principal, project) and policy.vendor_allowed(principal, project):
            items.append(to_out(project, LabelSchema.model_validate(doc)))
    next_cursor = str(rows[limit - 1][0].id) if len(rows) > limit else None
    return items, next_cursor


async def list_schema_versions(session: AsyncSession, principal: Principal, project_id: Any
                               ) -> list[SchemaVersionOut]:
    project = await get_project(session, principal, project_id)
    rows = (await session.execute(sa.select(LabelSchemaVersion).where(LabelSchemaVersion.project_id == project.id)
                                  .order_by(LabelSchemaVersion.version))).scalars().all()
    return [SchemaVersionOut(version=r.version, label_schema=LabelSchema.model_validate(r.label_schema),
                             created_by=r.created_by, created_at=r.created_at) for r in rows]


def pii_settings(project: Project) -> PiiSettings:
    return PiiSettings.model_validate(project.pii or {})
