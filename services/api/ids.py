"""Ids in paths and bodies: a malformed id is treated like an unknown one (404), never a 500 or a 422 leak."""

from __future__ import annotations

import uuid
from typing import Any

from shared.errors import NotFound


def uuid_or_404(value: Any, what: str = "resource") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no such {what}") from None
