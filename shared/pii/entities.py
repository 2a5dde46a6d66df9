"""Entity types the redactor knows and the span it reports for each finding."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter


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


def resolve_raw(found: list[tuple[int, int, EntityType]]) -> list[tuple[int, int, EntityType]]:
    """`resolve_overlaps` on `(start, end, entity_type)` tuples. Findings seldom overlap: when none do
    (and no two start together), they are all kept, in order of start."""
    if len(found) < 2:
        return found
    by_start = sorted(found)
    prev_start = prev_end = -1
    for start, end, _ in by_start:
        if start < prev_end or start == prev_start:
            break
        prev_start, prev_end = start, end
    else:
        return by_start
    kept: list[tuple[int, int, EntityType]] = []
    for cand in sorted(found, key=_priority_order):
        start, end = cand[0], cand[1]
        for k in kept:
            if end > k[0] and start < k[1]:
                break
        else:
            kept.append(cand)
    kept.sort(key=itemgetter(0))
    return kept


def _priority_order(f: tuple[int, int, EntityType]) -> tuple[int, int, int]:
    return -PRIORITY[f[2]], f[0] - f[1], f[0]
