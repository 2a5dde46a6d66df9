"""Who may see and change a project's consensus data — the one place these decisions are made.

- view (consensus results, agreement, annotator quality, plots, refit status): the project's managers and
  reviewers (project role), the owning organisation's org admins and project managers. Never annotators
  (consensus labels and agreement reveal what others answered), never vendor worker tokens, never auditors.
- manage (settings, refit trigger): the project's managers and the organisation's org admins and project
  managers; users only.

The route gate (`require(...)`, declared with the sets below) decides from the token's claims alone; the
organisation check happens here against the project's organisation, learned from the events' envelopes:
a project of another organisation, or one this service has never heard of, is 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.auth.principal import Principal, Role
from shared.errors import Forbidden, NotFound

VIEW_ORG_ROLES = frozenset({Role.ORG_ADMIN, Role.PROJECT_MANAGER})
VIEW_PROJECT_ROLES = frozenset({Role.PROJECT_MANAGER, Role.REVIEWER})
MANAGE_ORG_ROLES = frozenset({Role.ORG_ADMIN, Role.PROJECT_MANAGER})
MANAGE_PROJECT_ROLES = frozenset({Role.PROJECT_MANAGER})


@dataclass(frozen=True)
class ProjectRef:
    id: str
    org_id: str | None


def _same_org(p: Principal, project: ProjectRef) -> bool:
    return p.kind == "user" and project.org_id is not None and str(project.org_id) == p.org_id


def can_view_quality(p: Principal, project: ProjectRef) -> bool:
    if not _same_org(p, project):
        return False
    return p.has_role(*VIEW_ORG_ROLES) or p.role_in(project.id) in VIEW_PROJECT_ROLES


def can_manage(p: Principal, project: ProjectRef) -> bool:
    if not _same_org(p, project):
        return False
    return p.has_role(*MANAGE_ORG_ROLES) or p.role_in(project.id) in MANAGE_PROJECT_ROLES


def authorize(p: Principal, project: ProjectRef | None, *, manage: bool = False) -> ProjectRef:
    """The project if allowed; 404 when the caller cannot see it (or it is unknown), 403 when it can but not this."""
    if project is None or not _same_org(p, project) or not (can_view_quality(p, project) or can_manage(p, project)):
        raise NotFound("no such project")
    if manage and not can_manage(p, project):
        raise Forbidden("only the project's managers can change consensus settings or start refits")
    if not manage and not can_view_quality(p, project):
        raise Forbidden("your role on this project does not allow reading its quality data")
    return project


def parse_project_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("no such project") from None
