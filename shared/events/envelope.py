"""The one envelope every event travels in."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalog import payload_model

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_event_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32; sorts by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_B32_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_event_ids(count: int) -> list[str]:
    """`count` ULIDs of this millisecond, as `new_event_id` makes them (10 chars of time, 16 of randomness), with
    the random parts encoded in bulk: ~20x cheaper per id on the hot paths (bulk import, consensus updates)."""
    ms = int(time.time() * 1000)
    prefix = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5))
    noise = base64.b32encode(os.urandom(10 * count)).translate(_B32_TO_CROCKFORD).decode("ascii")
    return [prefix + noise[i:i + 16] for i in range(0, 16 * count, 16)]


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_event_id)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str
    org_id: str | None = None
    project_id: str | None = None
    request_id: str | None = None
    payload: dict[str, Any]

    def typed_payload(self) -> BaseModel:
        """The payload validated against the catalog entry for this type and version."""
        return payload_model(self.type, self.version).model_validate(self.payload)

    def to_stream_fields(self) -> dict[str, str]:
        return {"type": self.type, "envelope": self.model_dump_json()}

    @classmethod
    def from_stream_fields(cls, fields: dict[str, str]) -> Envelope:
        return cls.model_validate_json(fields["envelope"])


def new_event(type: str, payload: BaseModel | dict[str, Any], *, producer: str, org_id: str | None = None,
              project_id: str | None = None, request_id: str | None = None, version: int | None = None) -> Envelope:
    """Build an envelope, validating the payload against the catalog so producers cannot drift."""
    from shared.events.catalog import EVENT_TYPES
    from shared.observability import current_request_id

    if version is None:
        if type not in EVENT_TYPES:
            raise KeyError(f"unknown event type {type!r}")
        version = max(EVENT_TYPES[type])
    model = payload_model(type, version)
    data = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
    validated = model.model_validate(data).model_dump(mode="json")
    return Envelope(type=type, version=version, producer=producer, org_id=org_id, project_id=project_id,
                    request_id=request_id or current_request_id(), payload=validated)
