"""The caller as every service sees it after verifying the token itself (no call to api per request)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    ORG_ADMIN = "org_admin"
    PROJECT_MANAGER = "project_manager"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"
    VENDOR_MANAGER = "vendor_manager"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    """A verified caller.

    kind="user": a person who logged in (org roles in `roles`, per-project roles in `project_roles`).
    kind="worker": a vendor worker's scoped token: only `project_roles` it was granted, only `scopes`.
    """

    kind: Literal["user", "worker"]
    subject: str  # user id
    org_id: str  # the caller's own organisation (a vendor's, for vendor workers)
    token_id: str  # jti of the token used
    roles: frozenset[str] = frozenset()
    project_roles: Mapping[str, str] = field(default_factory=dict)
    scopes: frozenset[str] | None = None  # None: not scope-limited (interactive users)
    vendor_id: str | None = None
    grant_id: str | None = None
    owner_org_id: str | None = None  # worker tokens: the data-owner organisation whose projects were granted
    session_id: str | None = None  # users: the refresh-token family this access token came from

    @property
    def is_worker(self) -> bool:
        return self.kind == "worker"

    @property
    def data_org_id(self) -> str:
        """The organisation whose data this caller may touch: its own, or the granting owner's for workers."""
        return self.owner_org_id if self.kind == "worker" and self.owner_org_id else self.org_id

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def role_in(self, project_id: str) -> str | None:
        return self.project_roles.get(str(project_id))

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes
