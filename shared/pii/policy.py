"""What to do with each entity type: mask, pseudonymise or keep."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.pii.entities import EntityType


class Action(StrEnum):
    MASK = "mask"  # typed placeholder: [EMAIL]
    PSEUDONYMISE = "pseudonymise"  # keyed, consistent within a project: [PERSON_3f9a1c0b2d4e]
    KEEP = "keep"  # left as it is, not reported


class RedactionPolicy(BaseModel):
    """Per-project redaction policy. Default: mask every entity type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Action = Action.MASK
    entities: dict[EntityType, Action] = Field(default_factory=dict)
    # Hex digits of the HMAC in a pseudonym. 12 (48 bits) keeps collisions between distinct people
    # unlikely up to millions of values per type and project; shorter is more readable, less unique.
    pseudonym_hex_chars: int = Field(default=12, ge=6, le=64)

    def action_for(self, entity_type: EntityType) -> Action:
        return self.entities.get(entity_type, self.default)

    def active_entities(self) -> frozenset[EntityType]:
        return frozenset(e for e in EntityType if self.action_for(e) is not Action.KEEP)
