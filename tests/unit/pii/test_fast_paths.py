"""The redactor's shortcuts (look-behind pre-checks, cached name plans, tuple findings) change no finding.

Expected values are what the straightforward implementation (before the shortcuts) returned; each text
sits on the edge of one shortcut.
"""

from __future__ import annotations

import pytest

from shared.pii import EntityType, GazetteerNameRecognizer, Redactor, Span

E = EntityType
CASES = [
    # IPv6 is only validated when it can have 8 groups: times are not addresses, "::" forms are.
    ("Logged at 10:32:11 from fe80::1ff:fe23:4567:890a and 1:2:3:4:5:6:7:8 or ::1 or 1:2:3:4:5:6:1.2.3.4 or 12:30",
     [("fe80::1ff:fe23:4567:890a", E.IP_ADDRESS), ("1:2:3:4:5:6:7:8", E.IP_ADDRESS)]),
    # "birth" before "date of birth": the later phrase is still found.
    ("Her birth certificate lists the date of birth: 12/03/1985; Birth date 1985-03-12; b. d. 4 May 1990.",
     [("12/03/1985", E.DATE_OF_BIRTH), ("1985-03-12", E.DATE_OF_BIRTH), ("4 May 1990", E.DATE_OF_BIRTH)]),
    ("On 2024-03-15 the device a4-5e-60-c2-11-0f and 00:1A:2B:3C:4D:5E joined; ISBN 978-3-16-148410-0.",
     [("a4-5e-60-c2-11-0f", E.MAC_ADDRESS), ("00:1A:2B:3C:4D:5E", E.MAC_ADDRESS)]),
    ("order no.: 4111 1111 1111 1111 and tracking # 0784 1336 3514 but card 4111 1111 1111 1111 is real.",
     [("4111 1111 1111 1111", E.CREDIT_CARD)]),
    ("IBAN-like DE89 3704\n4111 1111 1111 1111 and GB82 WEST 1234 5698 7654 32 then 5500-0000-0000-0004.",
     [("GB82 WEST 1234 5698 7654 32", E.IBAN), ("5500-0000-0000-0004", E.CREDIT_CARD)]),
    # Digits beyond 0-9 send the text down the Unicode digit path.
    ("call ٤١٥-٥٥٥-٠١٢٣ or 415-555-0123 (Arabic-Indic digits take the Unicode path; € 12).",
     [("415-555-0123", E.PHONE)]),
    ("Post to Hauptstraße 5, 10115 Berlin or Rosengasse 12 or Goethestrasse 7a; 12 rue de la Paix; 3bis rue Cler.",
     [("Hauptstraße 5, 10115 Berlin", E.STREET_ADDRESS), ("Rosengasse 12", E.STREET_ADDRESS),
      ("Goethestrasse 7a", E.STREET_ADDRESS), ("12 rue de la Paix", E.STREET_ADDRESS),
      ("3bis rue Cler", E.STREET_ADDRESS)]),
    ("Ship to 12-14 Main Street, Apt 4, Boston, MA 02110 or 742 12th Street or 99999 Berlin office.",
     [("12-14 Main Street, Apt 4, Boston, MA 02110", E.STREET_ADDRESS), ("742 12th Street", E.STREET_ADDRESS)]),
    ("v1/192.168.1.1 and firmware 10.0.0.1 and from 10.0.0.2 and user21@example.com and x_5 555-0123",
     [("10.0.0.2", E.IP_ADDRESS), ("user21@example.com", E.EMAIL)]),
    ("SSN: 536228726, social security number 536-22-8726, phone 4155550123, tel: 020 79460958.",
     [("536228726", E.US_SSN), ("536-22-8726", E.US_SSN), ("4155550123", E.PHONE), ("020 79460958", E.PHONE)]),
    ("NI AB 12 34 56 C, AB123456C, NIE X1234567L, DNI 12345678Z, 12345678-Z and BE12 3456 7890 12, which failed.",
     [("AB 12 34 56 C", E.UK_NINO), ("AB123456C", E.UK_NINO), ("X1234567L", E.ES_NIF), ("12345678Z", E.ES_NIF),
      ("12345678-Z", E.ES_NIF)]),
    ("postgres://admin:S3cr3t!@db.example.com:5432/app and mailto jane.doe+news@mail.example.org.",
     [("admin:S3cr3t!", E.URL_CREDENTIALS), ("jane.doe+news@mail.example.org", E.EMAIL)]),
    # The same run ("Okafor", "Lopez") with and without a cue before it, in one text.
    ("Dear Okafor, thanks. Okafor left. My name is Lopez. Lopez called. Thank You Maria Lopez. Mr. Smith. K. Rossi",
     [("Okafor", E.PERSON), ("Lopez", E.PERSON), ("Maria Lopez", E.PERSON), ("Smith", E.PERSON)]),
    ("The Customer Success Team met Dr. Jackson and Andrew Jackson in Austin; Will you ask Rose Young? Hi June Garcia",
     [("Jackson", E.PERSON), ("Andrew Jackson", E.PERSON)]),
    ("signed by Van Der Berg; speak with O'Brien-Smith; cc McDonald; attn: Smith-Jones; best, Priya",
     [("Van Der Berg", E.PERSON), ("O'Brien-Smith", E.PERSON), ("McDonald", E.PERSON), ("Smith-Jones", E.PERSON),
      ("Priya", E.PERSON)]),
    # Cues that end inside a capitalised run ("Contact Person", "Account Holder", "Signed By").
    ("Our Contact Person Okafor replied. Account Holder Okafor signed. Signed By Okafor today. From Okafor",
     [("Person Okafor", E.PERSON), ("Okafor", E.PERSON), ("Okafor", E.PERSON), ("Okafor", E.PERSON)]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_findings_unchanged(text: str, expected: list[tuple[str, EntityType]]) -> None:
    spans = Redactor(name_recognizer=GazetteerNameRecognizer()).find(text)
    assert all(type(s) is Span for s in spans)
    assert [(text[s.start:s.end], s.entity_type) for s in spans] == expected


def test_name_plans_do_not_depend_on_what_was_seen_before() -> None:
    texts = [t for t, _ in CASES]
    warm = GazetteerNameRecognizer()
    first = [warm.find_names(t) for t in texts]
    assert [warm.find_names(t) for t in reversed(texts)] == first[::-1]
    for t, names in zip(texts, first):
        cold = GazetteerNameRecognizer()
        assert cold.find_names(t) == names
        assert cold.collect(t, [], "x") == [(s, e, "x") for s, e in names]


def test_redact_replaces_exactly_what_find_reports() -> None:
    r = Redactor(name_recognizer=GazetteerNameRecognizer())
    for text, _ in CASES:
        spans = r.find(text)
        expected, pos = [], 0
        for s in spans:
            expected += [text[pos:s.start], f"[{s.entity_type.value}]"]
            pos = s.end
        res = r.redact(text)
        assert res.text == "".join(expected) + text[pos:]
        assert [e.entity_type for e in res.entities] == [s.entity_type for s in spans]
