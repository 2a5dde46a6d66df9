"""Policies, pseudonyms, report offsets and nested-JSON redaction."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from shared.pii import (
    Action,
    EntityType,
    GazetteerNameRecognizer,
    PseudonymKeyError,
    RedactionPolicy,
    Redactor,
    SpacyNameRecognizer,
    pseudonym,
    redact,
    redact_json,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TEXT = ("Dear Maria Garcia, call 415-555-0123 or mail maria.garcia@example.com. "
        "Card 4111 1111 1111 1111. I live at 742 Evergreen Terrace, Springfield, IL 62704.")
PSEUDO = RedactionPolicy(default=Action.PSEUDONYMISE)


def test_mask_is_default_and_typed() -> None:
    res = redact(TEXT)
    assert res.text == ("Dear [PERSON], call [PHONE] or mail [EMAIL]. Card [CREDIT_CARD]. "
                        "I live at [STREET_ADDRESS].")
    assert res.counts == {"PERSON": 1, "PHONE": 1, "EMAIL": 1, "CREDIT_CARD": 1, "STREET_ADDRESS": 1}


def test_report_offsets_point_at_placeholders_and_hold_no_values() -> None:
    for policy, key in ((RedactionPolicy(), None), (PSEUDO, KEY)):
        res = redact(TEXT, policy, key)
        assert len(res.entities) == 5
        for ent in res.entities:
            assert res.text[ent.start:ent.end] == ent.placeholder
            assert ent.placeholder.startswith(f"[{ent.entity_type.value}")
        report = str(res.report)
        for secret in ("Maria", "Garcia", "555-0123", "example.com", "4111", "Evergreen"):
            assert secret not in report
            assert secret not in res.text


def test_pseudonyms_consistent_normalised_and_key_dependent() -> None:
    r = Redactor(PSEUDO, KEY)
    a = r.redact("Dear Maria Garcia, write to Maria.Garcia@Example.com").entities
    b = r.redact("I spoke with Maria Garcia about maria.garcia@example.com").entities
    pa = {e.entity_type: e.placeholder for e in a}
    pb = [e.placeholder for e in b]
    assert pa[EntityType.PERSON] in pb
    assert pa[EntityType.EMAIL] in pb
    assert re.fullmatch(r"\[PERSON_[0-9a-f]{12}\]", pa[EntityType.PERSON])
    other = Redactor(PSEUDO, OTHER_KEY).redact("Dear Maria Garcia").entities[0].placeholder
    assert other != pa[EntityType.PERSON]
    different = r.redact("Dear Maria Lopez").entities[0].placeholder
    assert different != pa[EntityType.PERSON]
    # Case and whitespace do not change a pseudonym; separators in numbers do not either.
    assert pseudonym(EntityType.PERSON, "Maria  GARCIA", KEY) == pseudonym(EntityType.PERSON, "maria garcia", KEY)
    assert pseudonym(EntityType.IBAN, "DE89 3704 0044 0532 0130 00", KEY) == pseudonym(
        EntityType.IBAN, "DE89370400440532013000", KEY)
    assert pseudonym(EntityType.PHONE, "(415) 555-0123", KEY) == pseudonym(EntityType.PHONE, "415.555.0123", KEY)


def test_per_entity_overrides_and_keep() -> None:
    policy = RedactionPolicy(entities={EntityType.PERSON: Action.KEEP, EntityType.EMAIL: Action.PSEUDONYMISE})
    res = redact(TEXT, policy, KEY)
    assert "Maria Garcia" in res.text
    assert "[PHONE]" in res.text
    assert re.search(r"\[EMAIL_[0-9a-f]{12}\]", res.text)
    assert "PERSON" not in res.counts


def test_pseudonymise_needs_a_real_key() -> None:
    with pytest.raises(PseudonymKeyError):
        Redactor(PSEUDO, None)
    with pytest.raises(PseudonymKeyError):
        Redactor(PSEUDO, b"short")
    with pytest.raises(ValidationError):
        RedactionPolicy(entities={"NOT_A_TYPE": "mask"})
    with pytest.raises(ValidationError):
        RedactionPolicy(default="shred")


def test_redact_json_walks_nested_strings_with_paths() -> None:
    task = {"data": {"text": "Call 415-555-0123", "meta": {"author": "Dear John Smith", "n": 3},
                     "comments": ["mail a@example.com", 7, None]}}
    red, report = redact_json(task)
    assert red == {"data": {"text": "Call [PHONE]", "meta": {"author": "Dear [PERSON]", "n": 3},
                            "comments": ["mail [EMAIL]", 7, None]}}
    paths = {(e["path"], e["entity_type"]) for e in report["entities"]}
    assert paths == {("data.text", "PHONE"), ("data.meta.author", "PERSON"), ("data.comments[0]", "EMAIL")}
    assert report["counts"] == {"PHONE": 1, "PERSON": 1, "EMAIL": 1}
    for e in report["entities"]:
        holder = {"data.text": red["data"]["text"], "data.meta.author": red["data"]["meta"]["author"],
                  "data.comments[0]": red["data"]["comments"][0]}[e["path"]]
        assert holder[e["start"]:e["end"]] == e["placeholder"]
    assert task["data"]["text"] == "Call 415-555-0123"  # input untouched


def test_name_recognizer_is_pluggable() -> None:
    class Fixed:
        def find_names(self, text: str) -> list[tuple[int, int]]:
            i = text.find("Zorblax")
            return [(i, i + 7)] if i >= 0 else []

    res = Redactor(name_recognizer=Fixed()).redact("ask Zorblax about it")
    assert res.text == "ask [PERSON] about it"


def test_spacy_adapter_reads_person_entities() -> None:
    # Any object with spaCy's Doc interface (ents with label_/start_char/end_char) plugs in; no model ships here.
    class Ent:
        def __init__(self, label: str, start: int, end: int) -> None:
            self.label_, self.start_char, self.end_char = label, start, end

    class Doc:
        def __init__(self, text: str) -> None:
            self.ents = [Ent("PERSON", 0, 12), Ent("ORG", text.index("Acme"), text.index("Acme") + 4)]

    text = "Zorblax Quux works at Acme."
    assert SpacyNameRecognizer(Doc).find_names(text) == [(0, 12)]


def test_gazetteer_avoids_common_capitalised_words() -> None:
    g = GazetteerNameRecognizer()
    text = "The Apple Watch arrived on Monday. Will you check? Grant access to the Support Team."
    assert g.find_names(text) == []
