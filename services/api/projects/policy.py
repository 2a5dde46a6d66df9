"""Project policy: who may see, manage, review or annotate a project. Other domains reuse these predicates.

Keep additions small and additive. The caller's organisation for data is `principal.data_org_id` (a vendor
worker's is the granting data owner's); `load_project` scopes the query by it, so another organisation's
project is never loaded: 404, not 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.projects.models import Project
from shared.auth.principal import Principal, Role
from shared.errors import Forbidden, NotFound

MANAGERS = frozenset({Role.PROJECT_MANAGER})
REVIEWERS = frozenset({Role.PROJECT_MANAGER, Role.REVIEWER})
ANNOTATORS = frozenset({Role.PROJECT_MANAGER, Role.REVIEWER, Role.ANNOTATOR})
ORG_WIDE = frozenset({Role.ORG_ADMIN, Role.PROJECT_MANAGER})  # organisation roles that cover every project


def _same_org(p: Principal, project: Project) -> bool:
    return str(project.org_id) == p.data_org_id


def _org_wide(p: Principal) -> bool:
    return p.kind == "user" and p.has_role(*ORG_WIDE)


def project_role(p: Principal, project: Project) -> str | None:
    return p.role_in(str(project.id)) if _same_org(p, project) else None


def can_view(p: Principal, project: Project) -> bool:
    return _same_org(p, project) and (_org_wide(p) or project_role(p, project) is not None)


def can_manage(p: Principal, project: Project) -> bool:
    return (p.kind == "user" and _same_org(p, project)
            and (_org_wide(p) or project_role(p, project) in MANAGERS))


def can_review(p: Principal, project: Project) -> bool:
    return can_manage(p, project) or (
        project_role(p, project) in REVIEWERS and p.has_scope("reviews:write"))


def can_annotate(p: Principal, project: Project) -> bool:
    return project_role(p, project) in ANNOTATORS and p.has_scope("annotations:write")


def can_read_media(p: Principal, project: Project) -> bool:
    return can_view(p, project) and p.has_scope("media:read")


async def load_project(session: AsyncSession, p: Principal, project_id: uuid.UUID | str,
                       allow: Callable[[Principal, Project], bool] = can_view) -> Project:
    """The project if `allow` says so; 404 if the caller cannot even see it, 403 if it can but not this."""
    try:
        pid = uuid.UUID(str(project_id))
    except ValueError:
        raise NotFound("no such project") from None
    project = (await session.execute(sa.select(Project).where(
        Project.id == pid, Project.org_id == uuid.UUID(p.data_org_id)))).scalar()
    if project is None or not can_view(p, project):
        raise NotFound("no such project")
    if not allow(p, project):
        raise Forbidden("your role on this project does not allow this")
    return project


# -- ingest and task reads (projects/imports/tasks domains) --------------------------------------------------

def vendor_allowed(p: Principal, project: Project) -> bool:
    """A vendor worker reaches a project only while the project still lists its vendor."""
    if p.kind != "worker":
        return True
    return p.vendor_id is not None and p.vendor_id in {str(v) for v in (project.allowed_vendor_ids or [])}


def can_create_project(p: Principal) -> bool:
    return p.kind == "user" and p.has_role(*ORG_WIDE)


def can_import(p: Principal, project: Project) -> bool:
    return can_manage(p, project)


def can_read_tasks(p: Principal, project: Project) -> bool:
    """Redacted task data (what annotators work on); vendor workers need `tasks:read` and an allowed vendor."""
    if not can_view(p, project) or not vendor_allowed(p, project):
        return False
    if p.kind == "user":
        return True  # can_view: org-wide role or a role on this project (auditors have neither)
    return project_role(p, project) in ANNOTATORS and bool((p.scopes or frozenset()) & {"tasks:read", "tasks:lease"})


def can_read_original(p: Principal, project: Project) -> bool:
    """Unredacted originals (kept only if the project says so): organisation admins of the data owner."""
    return p.kind == "user" and _same_org(p, project) and p.has_role(Role.ORG_ADMIN)


def can_create(p: Principal, org_id: str | uuid.UUID) -> bool:
    return p.kind == "user" and str(org_id) == p.org_id and p.has_role(*ORG_WIDE)


async def authorize(allowed: bool, p: Principal, project: Project, action: str) -> None:
    """Raise unless `allowed`: 403 if the caller can see the project, 404 if even that would leak."""
    if allowed:
        return
    if can_view(p, project):
        raise Forbidden(f"your role on this project does not allow you to {action}")
    raise NotFound("no such project")
