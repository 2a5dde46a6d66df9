"""Task-read predicates: vendor workers need a grant for the project, `tasks:read`, and an allowed vendor."""

from __future__ import annotations

import uuid

from services.api.projects import policy
from services.api.projects.models import Project
from shared.auth.principal import Principal

ORG = str(uuid.uuid4())
VENDOR = str(uuid.uuid4())


def _project(vendors: list[str]) -> Project:
    return Project(id=uuid.uuid4(), org_id=uuid.UUID(ORG), name="p", allowed_vendor_ids=vendors)


def _worker(project: Project, scopes: frozenset[str] = frozenset({"tasks:read"})) -> Principal:
    return Principal(kind="worker", subject="w", org_id=str(uuid.uuid4()), token_id="t",
                     project_roles={str(project.id): "annotator"}, scopes=scopes, vendor_id=VENDOR,
                     owner_org_id=ORG)


def test_vendor_worker_reads_tasks_only_of_projects_allowing_its_vendor() -> None:
    allowed, closed = _project([VENDOR]), _project([])
    assert policy.can_read_tasks(_worker(allowed), allowed)
    assert not policy.can_read_tasks(_worker(closed), closed)
    assert not policy.can_read_tasks(_worker(allowed, frozenset({"annotations:write"})), allowed)
    assert not policy.can_read_original(_worker(allowed), allowed)


def test_org_roles() -> None:
    project = _project([])
    admin = Principal(kind="user", subject="a", org_id=ORG, token_id="t", roles=frozenset({"org_admin"}))
    auditor = Principal(kind="user", subject="b", org_id=ORG, token_id="t", roles=frozenset({"auditor"}))
    annotator = Principal(kind="user", subject="c", org_id=ORG, token_id="t",
                          project_roles={str(project.id): "annotator"})
    assert policy.can_read_original(admin, project) and policy.can_read_tasks(admin, project)
    assert not policy.can_read_tasks(auditor, project)
    assert policy.can_read_tasks(annotator, project) and not policy.can_import(annotator, project)
