"""Storage errors. Plain exceptions (no HTTP here); `shared.errors` maps them to problem+json."""

from __future__ import annotations


class InvalidObjectKey(ValueError):
    """An object key that could escape its namespace or that no backend can store (→ 400)."""

    def __init__(self, key: object, reason: str) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class ObjectKeyConflict(InvalidObjectKey):
    """The local backend cannot hold both `a` and `a/b` (a file cannot also be a directory) (→ 409)."""


class ObjectNotFound(LookupError):
    """No object under this key (→ 404)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key!r}")
        self.key = key


class StorageUnavailable(RuntimeError):
    """The backend cannot be reached or used right now (→ 503); the message names what is wrong."""
