"""Events between services: a typed envelope, a transactional outbox with a relay, and stream consumers."""

from shared.events.catalog import EVENT_TYPES, payload_model
from shared.events.envelope import Envelope, new_event, new_event_id
from shared.events.outbox import publish

__all__ = ["EVENT_TYPES", "Envelope", "new_event", "new_event_id", "payload_model", "publish"]
