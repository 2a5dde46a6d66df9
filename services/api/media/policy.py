"""Who may do what with media and erasure. The rules are the project policy's (`services.api.projects.policy`);
this module only names them for media and says why a caller was refused (for the 403 and the audit trail).

- read (stream, mint a signed link): project members and the organisation's admins / project managers;
  vendor workers only on a project granted to them that still allows their vendor, with `media:read`.
  Auditors read the audit log, nothing else.
- write (upload, import, delete) and erase: users who manage the project. Never a worker token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.api.projects import policy as project_policy
from shared.auth.principal import Principal

MEDIA_READ_SCOPE = "media:read"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def same_org(principal: Principal, project: Any) -> bool:
    return str(project.org_id) == principal.data_org_id


def can_read_media(principal: Principal, project: Any) -> Decision:
    if not same_org(principal, project):
        return Decision(False, "project belongs to another organisation")
    if not project_policy.can_view(principal, project):
        return Decision(False, "no role on this project")
    if not principal.has_scope(MEDIA_READ_SCOPE):
        return Decision(False, f"token lacks the {MEDIA_READ_SCOPE} scope")
    if not project_policy.vendor_allowed(principal, project):
        return Decision(False, "this project no longer allows the token's vendor")
    if not project_policy.can_read_media(principal, project):
        return Decision(False, "role on this project does not allow reading media")
    return Decision(True, "project member")


def can_write_media(principal: Principal, project: Any) -> Decision:
    if not same_org(principal, project):
        return Decision(False, "project belongs to another organisation")
    if principal.kind != "user":
        return Decision(False, "worker tokens cannot add or delete media")
    if not project_policy.can_manage(principal, project):
        return Decision(False, "only the project's managers and org admins manage media")
    return Decision(True, "project manager")


def can_erase(principal: Principal, project: Any) -> Decision:
    decision = can_write_media(principal, project)
    if not decision:
        return Decision(False, decision.reason.replace("add or delete media", "erase data")
                        .replace("manage media", "erase data"))
    return decision
