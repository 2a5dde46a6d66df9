"""`redact()`: find PII in a text and replace it according to a policy, with a report of what changed.

The report gives offsets in the *redacted* text and never the original values, so it can be stored and
shown next to the task.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.pii.entities import EntityType, Span, resolve_raw
from shared.pii.names import GazetteerNameRecognizer, NameRecognizer, default_name_recognizer
from shared.pii.scanner import scan_raw
from shared.pii.policy import Action, RedactionPolicy

MIN_KEY_BYTES = 16
_WS = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[\s().\-/]")


class PseudonymKeyError(ValueError):
    """Pseudonymisation needs a per-project secret key of at least MIN_KEY_BYTES bytes."""


@dataclass(frozen=True, slots=True)
class RedactedEntity:
    start: int  # in the redacted text
    end: int
    entity_type: EntityType
    placeholder: str
    action: Action

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "entity_type": self.entity_type.value,
                "placeholder": self.placeholder, "action": self.action.value}


@dataclass(frozen=True, slots=True)
class RedactionResult:
    text: str
    entities: list[RedactedEntity] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(e.entity_type.value for e in self.entities))

    @property
    def report(self) -> dict[str, Any]:
        return {"counts": self.counts, "entities": [e.as_dict() for e in self.entities]}


def normalise_value(entity_type: EntityType, value: str) -> str:
    """The form that is hashed: the same person or number written differently gets one pseudonym."""
    if entity_type in (EntityType.PERSON, EntityType.STREET_ADDRESS, EntityType.DATE_OF_BIRTH):
        return _WS.sub(" ", value).strip().casefold()
    if entity_type in (EntityType.EMAIL, EntityType.URL_CREDENTIALS):
        return value.strip().casefold()
    if entity_type is EntityType.PHONE:
        digits = "".join(c for c in value if c.isdigit())
        return ("+" if value.lstrip().startswith("+") else "") + digits
    if entity_type in (EntityType.MAC_ADDRESS, EntityType.IP_ADDRESS):
        return value.strip().lower().replace("-", ":")
    return _SEPARATORS.sub("", value).upper()


def pseudonym(entity_type: EntityType, value: str, key: bytes, hex_chars: int = 12) -> str:
    msg = f"{entity_type.value}\x00{normalise_value(entity_type, value)}".encode()
    digest = hmac.new(key, msg, hashlib.sha256).hexdigest()[:hex_chars]
    return f"[{entity_type.value}_{digest}]"


class Redactor:
    """Reusable redactor for one policy (and project key). Thread-safe: it holds no per-call state."""

    def __init__(self, policy: RedactionPolicy | None = None, key: bytes | None = None,
                 name_recognizer: NameRecognizer | None = None) -> None:
        self.policy = policy or RedactionPolicy()
        active = self.policy.active_entities()
        if key is not None and not isinstance(key, bytes | bytearray):
            raise PseudonymKeyError("the pseudonymisation key must be bytes")
        if any(self.policy.action_for(e) is Action.PSEUDONYMISE for e in active):
            if key is None or len(key) < MIN_KEY_BYTES:
                raise PseudonymKeyError(f"pseudonymisation needs a project key of at least {MIN_KEY_BYTES} bytes")
        self._key = bytes(key) if key is not None else b""
        self._active = active
        self._scan_patterns = bool(active - {EntityType.PERSON})
        self._names = (name_recognizer or default_name_recognizer()) if EntityType.PERSON in active else None
        # The gazetteer can append straight to the findings (no per-name tuple to re-wrap).
        names_type = type(self._names)
        self._collect_names = (self._names.collect if isinstance(self._names, GazetteerNameRecognizer)
                               and names_type.find_names is GazetteerNameRecognizer.find_names else None)
        self._actions = {e: self.policy.action_for(e) for e in EntityType}
        self._masks = {e: f"[{e.value}]" for e in EntityType}
        self._hex = self.policy.pseudonym_hex_chars

    def find(self, text: str) -> list[Span]:
        """Non-overlapping findings in the original text, in order."""
        return [Span(s, e, t) for s, e, t in self._find(text)]

    def _find(self, text: str) -> list[tuple[int, int, EntityType]]:
        found: list[tuple[int, int, EntityType]] = []
        if self._scan_patterns:
            scan_raw(text, self._active, found)
        if self._collect_names is not None:
            self._collect_names(text, found, EntityType.PERSON)
        elif self._names is not None:
            person = EntityType.PERSON
            for s, e in self._names.find_names(text):
                found.append((s, e, person))
        return resolve_raw(found)

    def redact(self, text: str) -> RedactionResult:
        spans = self._find(text)
        if not spans:
            return RedactionResult(text, [])
        parts: list[str] = []
        entities: list[RedactedEntity] = []
        pos = 0
        out_len = 0
        actions, masks = self._actions, self._masks
        for start, end, entity_type in spans:
            chunk = text[pos:start]
            parts.append(chunk)
            out_len += len(chunk)
            action = actions[entity_type]
            if action is Action.PSEUDONYMISE:
                placeholder = pseudonym(entity_type, text[start:end], self._key, self._hex)
            else:
                placeholder = masks[entity_type]
            parts.append(placeholder)
            entities.append(RedactedEntity(out_len, out_len + len(placeholder), entity_type, placeholder, action))
            out_len += len(placeholder)
            pos = end
        parts.append(text[pos:])
        return RedactionResult("".join(parts), entities)

    def redact_json(self, obj: Any, path: str = "") -> tuple[Any, list[dict[str, Any]]]:
        """Redact every string inside a JSON-like value; the report entries carry the field path."""
        report: list[dict[str, Any]] = []
        return self._walk(obj, path, report), report

    def _walk(self, obj: Any, path: str, report: list[dict[str, Any]]) -> Any:
        if isinstance(obj, str):
            res = self.redact(obj)
            for ent in res.entities:
                report.append({"path": path, **ent.as_dict()})
            return res.text
        if isinstance(obj, Mapping):
            return {k: self._walk(v, f"{path}.{k}" if path else str(k), report) for k, v in obj.items()}
        if isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
            return [self._walk(v, f"{path}[{i}]", report) for i, v in enumerate(obj)]
        return obj


def redact(text: str, policy: RedactionPolicy | None = None, key: bytes | None = None,
           name_recognizer: NameRecognizer | None = None) -> RedactionResult:
    """One-off convenience; build a `Redactor` once per project for bulk work."""
    return Redactor(policy, key, name_recognizer).redact(text)


def redact_json(obj: Any, policy: RedactionPolicy | None = None, key: bytes | None = None,
                name_recognizer: NameRecognizer | None = None) -> tuple[Any, dict[str, Any]]:
    """Redact every string field of a nested dict/list. Returns (redacted copy, combined report)."""
    redacted, entries = Redactor(policy, key, name_recognizer).redact_json(obj)
    return redacted, {"counts": dict(Counter(e["entity_type"] for e in entries)), "entities": entries}
