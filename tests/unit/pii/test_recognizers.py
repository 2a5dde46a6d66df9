"""Each entity type is found; look-alikes (bad checksums, hard negatives) are not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.pii import EntityType, Redactor
from shared.pii.entities import resolve_overlaps
from shared.pii.patterns import REFERENCE_FINDERS
from shared.pii.scanner import scan

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.datagen.pii_corpus import iter_corpus  # noqa: E402

E = EntityType
REDACTOR = Redactor()


def found(text: str) -> list[tuple[str, EntityType]]:
    return [(text[s.start:s.end], s.entity_type) for s in REDACTOR.find(text)]


@pytest.mark.parametrize(("text", "value", "etype"), [
    ("Write to jane.doe+news@mail.example.org today.", "jane.doe+news@mail.example.org", E.EMAIL),
    ("Call (415) 555-0123 after lunch.", "(415) 555-0123", E.PHONE),
    ("Call 415-555-0123.", "415-555-0123", E.PHONE),
    ("Mobile +44 7700 900123 please.", "+44 7700 900123", E.PHONE),
    ("Office +49 30 12345678.", "+49 30 12345678", E.PHONE),
    ("Ring 020 7946 0958 now.", "020 7946 0958", E.PHONE),
    ("Paris line 01 23 45 67 89.", "01 23 45 67 89", E.PHONE),
    ("my phone is 4155550123", "4155550123", E.PHONE),
    ("Card 4111 1111 1111 1111 on file.", "4111 1111 1111 1111", E.CREDIT_CARD),
    ("Card 5500-0000-0000-0004 on file.", "5500-0000-0000-0004", E.CREDIT_CARD),
    ("Amex 3782 822463 10005 on file.", "3782 822463 10005", E.CREDIT_CARD),
    ("IBAN DE89 3704 0044 0532 0130 00 please.", "DE89 3704 0044 0532 0130 00", E.IBAN),
    ("IBAN GB82WEST12345698765432.", "GB82WEST12345698765432", E.IBAN),
    ("SSN 536-22-8726 on the form.", "536-22-8726", E.US_SSN),
    ("My SSN: 536228726.", "536228726", E.US_SSN),
    ("NI number AB 12 34 56 C.", "AB 12 34 56 C", E.UK_NINO),
    ("NI number AB123456C.", "AB123456C", E.UK_NINO),
    ("DNI 12345678Z.", "12345678Z", E.ES_NIF),
    ("NIE X1234567L.", "X1234567L", E.ES_NIF),
    ("From 192.168.1.10 today.", "192.168.1.10", E.IP_ADDRESS),
    ("From fe80::1ff:fe23:4567:890a today.", "fe80::1ff:fe23:4567:890a", E.IP_ADDRESS),
    ("From 2001:db8:85a3:0:0:8a2e:370:7334 today.", "2001:db8:85a3:0:0:8a2e:370:7334", E.IP_ADDRESS),
    ("MAC 00:1A:2B:3C:4D:5E.", "00:1A:2B:3C:4D:5E", E.MAC_ADDRESS),
    ("MAC a4-5e-60-c2-11-0f.", "a4-5e-60-c2-11-0f", E.MAC_ADDRESS),
    ("DSN postgres://admin:S3cr3t!@db.example.com:5432/app ok", "admin:S3cr3t!", E.URL_CREDENTIALS),
    ("I was born on 12 March 1985 in Leeds.", "12 March 1985", E.DATE_OF_BIRTH),
    ("DOB: 03/12/1985.", "03/12/1985", E.DATE_OF_BIRTH),
    ("Date of birth 1985-03-12.", "1985-03-12", E.DATE_OF_BIRTH),
    ("I live at 742 Evergreen Terrace, Springfield, IL 62704.", "742 Evergreen Terrace, Springfield, IL 62704",
     E.STREET_ADDRESS),
    ("Ship to 221B Baker Street, London NW1 6XE.", "221B Baker Street, London NW1 6XE", E.STREET_ADDRESS),
    ("Office at 1600 Pennsylvania Ave NW, Suite 4.", "1600 Pennsylvania Ave NW, Suite 4", E.STREET_ADDRESS),
    ("Post to Hauptstraße 5, 10115 Berlin.", "Hauptstraße 5, 10115 Berlin", E.STREET_ADDRESS),
    ("Write to 12 rue de la Paix, Paris.", "12 rue de la Paix", E.STREET_ADDRESS),
    ("My name is Oluwaseun Adeyemi and I need help.", "Oluwaseun Adeyemi", E.PERSON),
    ("I spoke with Jennifer Lopez yesterday.", "Jennifer Lopez", E.PERSON),
    ("Dr. Okafor approved it.", "Okafor", E.PERSON),
    ("Signed, Maria K. Rossi", "Maria K. Rossi", E.PERSON),
    ("Dear Priya Sharma, thanks.", "Priya Sharma", E.PERSON),
])
def test_entity_found(text: str, value: str, etype: EntityType) -> None:
    assert (value, etype) in found(text)


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112 was declined.",  # bad Luhn
    "IBAN DE88 3704 0044 0532 0130 00 is wrong.",  # bad mod-97
    "SSN 000-12-3456 and 666-12-3456 and 912-12-3456 are never issued.",
    "NIF 12345678A has the wrong letter.",
    "We upgraded to version 4.2.1.0 last night.",
    "The fix ships in v2.14.1.",
    "The error was logged at 2024-03-15 10:32:11.",
    "Last sync: 2024-03-15T10:32:11Z.",
    "See the manual, ISBN 978-3-16-148410-0.",
    "The handbook (ISBN 0-306-40615-2) is in the library.",
    "Your order number is 4400128842.",
    "Order #A-2024-558812 shipped.",
    "Order 389-1082730-7233465 is on hold.",
    "UPS tracking 1Z999AA10123456784.",
    "USPS tracking number 9400 1000 0000 0000 0000 00.",
    "FedEx tracking 0784 1336 3514 shows it in transit.",
    "The total came to $1,299.99.",
    "The meeting is on 12/03/2024.",
    "Microsoft Teams and Google Drive are used for all internal collaboration.",
    "The Customer Success Team will follow up on Monday.",
    "Our Support Portal was slow in March.",
    "Will you send it before Christmas?",
    "Timer at 10:32:11 and 12:30 pm.",
])
def test_hard_negatives_not_flagged(text: str) -> None:
    assert found(text) == []


def test_url_credentials_win_over_email() -> None:
    text = "use https://bob:pw@example.com/x"
    assert found(text) == [("bob:pw", E.URL_CREDENTIALS)]


def test_single_pass_scanner_equals_reference_finders() -> None:
    active = frozenset(EntityType) - {E.PERSON}
    for doc in iter_corpus(300, seed=11):
        fast: list = []
        scan(doc.text, active, fast)
        ref: list = []
        for finder in REFERENCE_FINDERS.values():
            finder(doc.text, ref)
        assert set(resolve_overlaps(fast)) == set(resolve_overlaps(ref)), doc.text


def test_corpus_recall_and_hard_negatives() -> None:
    docs = list(iter_corpus(300, seed=3))
    gold = hit = neg = neg_hit = 0
    for doc in docs:
        spans = REDACTOR.find(doc.text)
        for s, e, t in doc.spans:
            gold += 1
            hit += any(p.entity_type == t and p.start < e and s < p.end for p in spans)
        for s, e, _ in doc.negatives:
            neg += 1
            neg_hit += any(p.start < e and s < p.end for p in spans)
    assert hit / gold >= 0.97
    assert neg_hit / neg <= 0.02
