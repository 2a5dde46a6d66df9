"""Entity types the redactor knows and the span it reports for each finding."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EntityType(StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    US_SSN = "US_SSN"
    UK_NINO = "UK_NINO"
    ES_NIF = "ES_NIF"
    IP_ADDRESS = "IP_ADDRESS"
    MAC_ADDRESS = "MAC_ADDRESS"
    URL_CREDENTIALS = "URL_CREDENTIALS"
    DATE_OF_BIRTH = "DATE_OF_BIRTH"
    STREET_ADDRESS = "STREET_ADDRESS"
    PERSON = "PERSON"


# Overlap resolution: a higher priority wins, then the longer span. Structured, checksum-validated
# identifiers beat fuzzy ones (a card number inside an "address", a name inside an email).
PRIORITY: dict[EntityType, int] = {
    EntityType.URL_CREDENTIALS: 100,
    EntityType.EMAIL: 95,
    EntityType.IBAN: 90,
    EntityType.CREDIT_CARD: 85,
    EntityType.US_SSN: 80,
    EntityType.UK_NINO: 80,
    EntityType.ES_NIF: 80,
    EntityType.MAC_ADDRESS: 75,
    EntityType.IP_ADDRESS: 70,
    EntityType.DATE_OF_BIRTH: 65,
    EntityType.PHONE: 60,
    EntityType.STREET_ADDRESS: 50,
    EntityType.PERSON: 40,
}


@dataclass(frozen=True, slots=True)
class Span:
    """A finding in the *original* text: half-open character range [start, end)."""

    start: int
    end: int
    entity_type: EntityType


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep a non-overlapping subset: highest priority first, then longest, then leftmost."""
    if len(spans) < 2:
        return spans
    ordered = sorted(spans, key=lambda s: (-PRIORITY[s.entity_type], s.start - s.end, s.start))
    kept: list[Span] = []
    for cand in ordered:
        if all(cand.end <= k.start or cand.start >= k.end for k in kept):
            kept.append(cand)
    kept.sort(key=lambda s: s.start)
    return kept
