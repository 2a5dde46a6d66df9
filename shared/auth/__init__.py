"""Who is calling: the verified principal every service's policies decide on, and how routes declare access."""

from shared.auth.dependencies import (
    RoutePolicy,
    current_principal,
    public,
    require,
    require_scope,
    route_policies,
)
from shared.auth.principal import Principal, Role

__all__ = ["Principal", "Role", "RoutePolicy", "current_principal", "public", "require", "require_scope",
           "route_policies"]
