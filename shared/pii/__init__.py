"""PII detection and redaction for ingest: offline recognizers, per-entity policies, keyed pseudonyms."""

from shared.pii.entities import EntityType, Span
from shared.pii.names import (
    CombinedNameRecognizer,
    GazetteerNameRecognizer,
    NameRecognizer,
    SpacyNameRecognizer,
    default_name_recognizer,
)
from shared.pii.policy import Action, RedactionPolicy
from shared.pii.redact import (
    PseudonymKeyError,
    RedactedEntity,
    RedactionResult,
    Redactor,
    pseudonym,
    redact,
    redact_json,
)

__all__ = [
    "Action", "CombinedNameRecognizer", "EntityType", "GazetteerNameRecognizer", "NameRecognizer",
    "PseudonymKeyError", "RedactedEntity", "RedactionPolicy", "RedactionResult", "Redactor",
    "SpacyNameRecognizer", "Span", "default_name_recognizer", "pseudonym", "redact", "redact_json",
]
