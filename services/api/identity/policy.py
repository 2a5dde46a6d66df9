"""Who may do what to identity resources (organisations, users, memberships, grants, worker tokens).

Pure predicates over the verified Principal and the loaded row; lookups that feed them are always scoped by
the caller's organisation (see service.py), so a row of another organisation is never even loaded (404).
"""

from __future__ import annotations

from services.api.identity.models import Organization, User, VendorGrant
from shared.auth.principal import Principal, Role

ORG_ROLES = frozenset({Role.ORG_ADMIN, Role.PROJECT_MANAGER, Role.AUDITOR, Role.VENDOR_MANAGER})
PROJECT_ROLES = frozenset({Role.PROJECT_MANAGER, Role.REVIEWER, Role.ANNOTATOR})
WORKER_ROLES = frozenset({Role.ANNOTATOR, Role.REVIEWER})  # what a vendor worker may act as on a project
SCOPES = frozenset({"tasks:lease", "tasks:read", "annotations:write", "annotations:read", "media:read",
                    "reviews:write"})


def _user(p: Principal) -> bool:
    return p.kind == "user"


def is_org_admin(p: Principal) -> bool:
    return _user(p) and p.has_role(Role.ORG_ADMIN)


def can_manage_org(p: Principal, org: Organization) -> bool:
    return is_org_admin(p) and str(org.id) == p.org_id


def can_manage_users(p: Principal) -> bool:
    return _user(p) and p.has_role(Role.ORG_ADMIN, Role.VENDOR_MANAGER)


def assignable_org_roles(p: Principal, org: Organization) -> frozenset[str]:
    """Org admins assign any role that fits the organisation; vendor managers only create plain workers."""
    if not is_org_admin(p):
        return frozenset()
    if org.kind == "vendor":
        return frozenset({Role.ORG_ADMIN, Role.VENDOR_MANAGER})
    return ORG_ROLES - {Role.VENDOR_MANAGER}


def can_change_user(p: Principal, user: User) -> bool:
    return is_org_admin(p) and str(user.org_id) == p.org_id


def can_issue_grant(p: Principal, owner: Organization) -> bool:
    return is_org_admin(p) and owner.kind == "data_owner" and str(owner.id) == p.org_id


def can_view_grant(p: Principal, grant: VendorGrant) -> bool:
    if not _user(p):
        return False
    if str(grant.owner_org_id) == p.org_id:
        return p.has_role(Role.ORG_ADMIN)
    if str(grant.vendor_org_id) == p.org_id:
        return p.has_role(Role.ORG_ADMIN, Role.VENDOR_MANAGER)
    return False


def can_revoke_grant(p: Principal, grant: VendorGrant) -> bool:
    return is_org_admin(p) and str(grant.owner_org_id) == p.org_id


def can_mint_worker_token(p: Principal, grant: VendorGrant) -> bool:
    return _user(p) and str(grant.vendor_org_id) == p.org_id and p.has_role(Role.VENDOR_MANAGER, Role.ORG_ADMIN)


def can_revoke_worker_token(p: Principal, grant: VendorGrant) -> bool:
    """The vendor that minted it, or the data owner cutting its data off."""
    return can_mint_worker_token(p, grant) or can_revoke_grant(p, grant)
