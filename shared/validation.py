"""Rules for request input that PostgreSQL would otherwise refuse, as a 500, after validation had passed.

PostgreSQL stores no NUL (U+0000) in `text` or `jsonb`, and an integer compared with an `integer`/`bigint`
column must fit it (asyncpg refuses to send it otherwise). Requests are checked in validation instead, so the
client gets a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_validator

NUL_MESSAGE = "must not contain NUL (U+0000) characters"
PG_INTEGER_MAX = 2**31 - 1
PG_BIGINT_MAX = 2**63 - 1


def has_nul(value: Any) -> bool:
    """Whether a string anywhere in `value` (lists, dicts and their keys, nested models) contains NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_nul(v) for v in value)
    if isinstance(value, BaseModel):
        return any(has_nul(v) for v in value.__dict__.values())
    return False


def reject_nul(value: Any) -> Any:
    if has_nul(value):
        raise ValueError(NUL_MESSAGE)
    return value


# a query or path parameter: `pseudonym: NulFreeStr | None = Query(None)`
NulFreeStr = Annotated[str, AfterValidator(reject_nul)]


class NulFreeModel(BaseModel):
    """A request body none of whose strings, at any depth, contains NUL."""

    @field_validator("*")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        return reject_nul(value)
