"""Who is calling: the verified principal every service's policies decide on."""

from shared.auth.principal import Principal, Role

__all__ = ["Principal", "Role"]
