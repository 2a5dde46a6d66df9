"""Deterministic corpus of ~200-word English texts seeded with PII and hard negatives.

Every document carries ground truth: character offsets and entity types of each PII value (types as in
`shared.pii.EntityType`) and of each hard negative (order numbers, version strings, timestamps, ISBNs,
tracking numbers, prices, checksum-invalid cards and IBANs, dates without birth context, capitalised
non-names). Document i depends only on (seed, i), so any slice can be regenerated.

    python benchmarks/datagen/pii_corpus.py --n 100000 --out tasks.jsonl          # {"data": {"text": ...}}
    python benchmarks/datagen/pii_corpus.py --n 2000 --out eval.jsonl --with-spans # + "spans", "negatives"

From code: `iter_corpus(n, seed)` yields `Doc(text, spans, negatives)`; `iter_labelled(n, seed)` yields
`(text, spans)` with spans as `(start, end, entity_type)`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import re
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FIRST_NAMES = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Margaret", "Mark", "Sandra", "Steven", "Ashley",
    "Andrew", "Emily", "Joshua", "Michelle", "Kevin", "Amanda", "Brian", "Melissa", "George", "Stephanie",
    "Maria", "Olivia", "Sophie", "Lucas", "Emma", "Noah", "Hannah", "Ethan", "Chloe", "Liam", "Isabella",
    "Priya", "Rahul", "Aisha", "Mohammed", "Fatima", "Wei", "Mei", "Hiroshi", "Yuki", "Olga", "Dmitri",
    "Sven", "Ingrid", "Giulia", "Matteo", "Lena", "Jonas", "Camille", "Mathieu", "Siobhan", "Niamh",
    "Oluwaseun", "Chidi", "Amara", "Kwame", "Santiago", "Valentina", "Joao", "Leticia", "Bjorn", "Freya",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez",
    "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson",
    "Baker", "Campbell", "Mitchell", "Carter", "Roberts", "Patel", "Sharma", "Khan", "Chen", "Wang", "Tanaka",
    "Kowalski", "Novak", "Schmidt", "Muller", "Rossi", "Bianchi", "Dubois", "Lefebvre", "Okafor", "Adeyemi",
    "Mensah", "Silva", "Santos", "Pereira", "Johansson", "Lindqvist", "Murphy", "O'Brien", "McCarthy",
    "Fitzgerald", "Ivanova", "Petrov", "Haddad", "Nakamura", "Kim", "Park", "Oyelaran", "Van der Berg",
]
TITLES = ["Mr", "Mrs", "Ms", "Dr", "Prof"]
STREET_NAMES = ["Main", "Oak", "Maple", "Cedar", "Elm", "Pine", "Washington", "Lake", "Hill", "Evergreen",
                "Baker", "Church", "High", "Park", "Sunset", "Highland", "Mill", "Willow", "River", "Chestnut",
                "Jefferson", "Franklin", "Madison", "Spring", "North Oak", "Old Mill", "Victoria", "Station"]
STREET_SUFFIXES = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Drive", "Court",
                   "Place", "Terrace", "Way", "Parkway", "Circle"]
CITIES = [("Springfield", "IL"), ("Portland", "OR"), ("Austin", "TX"), ("Denver", "CO"), ("Madison", "WI"),
          ("Boston", "MA"), ("Seattle", "WA"), ("Columbus", "OH"), ("Raleigh", "NC"), ("Tucson", "AZ")]
EMAIL_DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "gmail.com", "outlook.com", "acme.io"]
DE_STREETS = ["Hauptstraße", "Bahnhofstraße", "Lindenweg", "Schillerplatz", "Goethestrasse", "Rosengasse"]

FILLER = [
    "We reviewed the ticket during the weekly sync and agreed on the next steps.",
    "The Customer Success Team will follow up once the investigation is complete.",
    "Please keep this thread for reference until the issue is resolved.",
    "Our Support Portal was slow on Monday morning, which delayed several replies.",
    "The shipment left the warehouse on schedule and should arrive within five business days.",
    "According to the Service Level Agreement, a first response is due within four hours.",
    "The quarterly report shows a steady increase in renewals across the Northern Region.",
    "I have attached the signed forms and the updated invoice to this message.",
    "Let me know if anything else is needed from our side before Friday.",
    "The Apple Watch and the Samsung Galaxy tablet were both returned in their original packaging.",
    "Training for the new Billing Dashboard starts next Tuesday in the Harbor View conference room.",
    "We apologise for the inconvenience and appreciate your patience.",
    "The refund has been approved and will appear on the next statement.",
    "Microsoft Teams and Google Drive are used for all internal collaboration.",
    "A technician checked the router and replaced the faulty power adapter.",
    "The Golden Gate office will be closed for the Thanksgiving holiday.",
    "Feedback from the pilot group was mostly positive, with a few usability complaints.",
    "The contract renewal was discussed with the Procurement Department last week.",
    "Our records show two previous requests about the same problem.",
    "The annual audit found no material issues in the Accounts Payable process.",
    "All passwords were rotated after the security review in March.",
    "The Premium Plan includes priority support and a dedicated account manager.",
    "The Berlin and Madrid offices will adopt the same workflow in the spring.",
    "Our legal counsel asked us to retain these records for seven years.",
    "The survey closes at the end of the month, and results will be shared internally.",
    "The Quality Assurance group signed off on the release candidate yesterday.",
    "Customers in the Pacific Northwest reported intermittent outages during the storm.",
    "The new onboarding checklist should reduce setup time by about a third.",
    "Please confirm the delivery window that works best for you.",
    "This case has been escalated to Tier Two for further analysis.",
]


@dataclass(slots=True)
class Doc:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, entity_type)
    negatives: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, kind)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.spans: list[tuple[int, int, str]] = []
        self.negatives: list[tuple[int, int, str]] = []
        self.words = 0

    def lit(self, s: str) -> None:
        self.parts.append(s)
        self.pos += len(s)
        self.words += len(s.split())

    def pii(self, value: str, entity_type: str) -> None:
        self.spans.append((self.pos, self.pos + len(value), entity_type))
        self.lit(value)

    def neg(self, value: str, kind: str) -> None:
        self.negatives.append((self.pos, self.pos + len(value), kind))
        self.lit(value)


# --- value generators ---------------------------------------------------------------------------------

def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _card(rng: random.Random, valid: bool = True) -> str:
    kind = rng.choice(["visa", "visa", "mc", "mc", "amex", "discover"])
    prefix, length = {"visa": ("4", 16), "mc": (str(rng.randint(51, 55)), 16), "amex": (rng.choice(["34", "37"]), 15),
                      "discover": ("6011", 16)}[kind]
    num = _luhn_complete(rng, prefix, length)
    if not valid:
        num = num[:-1] + str((int(num[-1]) + rng.randint(1, 9)) % 10)
    style = rng.choice(["space", "space", "dash", "plain"])
    if length == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, length, 4)]
    return {"space": " ".join(groups), "dash": "-".join(groups), "plain": num}[style]


_IBAN_SPECS = {"DE": "n18", "GB": "a4n14", "FR": "n23", "NL": "a4n10", "ES": "n20", "IT": "a1n22", "BE": "n12"}


def _iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(list(_IBAN_SPECS))
    bban = ""
    for kind, count in re.findall(r"([an])(\d+)", _IBAN_SPECS[country]):
        pool = string.ascii_uppercase if kind == "a" else string.digits
        bban += "".join(rng.choice(pool) for _ in range(int(count)))
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - num % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
        if check == 98 - num % 97:
            check = check % 97 + 2
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.7:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def _phone(rng: random.Random) -> str:
    d = lambda k: "".join(rng.choice(string.digits) for _ in range(k))  # noqa: E731
    area = str(rng.randint(201, 989))
    return rng.choice([
        f"({area}) {rng.randint(200, 999)}-{d(4)}",
        f"{area}-{rng.randint(200, 999)}-{d(4)}",
        f"{area}.{rng.randint(200, 999)}.{d(4)}",
        f"+1 {area} {rng.randint(200, 999)} {d(4)}",
        f"+1-{area}-{rng.randint(200, 999)}-{d(4)}",
        f"+44 20 {rng.randint(7000, 8999)} {d(4)}",
        f"+44 7700 {d(6)}",
        f"07700 {d(6)}",
        f"020 {rng.randint(7000, 8999)} {d(4)}",
        f"+49 30 {d(8)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"0{rng.randint(1, 5)} {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+31 20 {d(3)} {d(4)}",
    ])


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(["-", "-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def _nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ".replace("O", ""))
    if first + second in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
        second = "A"
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


def _es_nif(rng: random.Random) -> str:
    n = rng.randint(10_000_000, 99_999_999)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def _ipv4(rng: random.Random) -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
    ])


def _ipv6(rng: random.Random) -> str:
    groups = [rng.randint(0, 0xFFFF) for _ in range(8)]
    groups[0] = rng.choice([0x2001, 0xFE80, 0x2A00, 0x2607])
    if rng.random() < 0.5:
        groups[2:5] = [0, 0, 0]
    return str(ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)))


def _mac(rng: random.Random) -> str:
    octets = [f"{rng.randint(0, 255):02X}" for _ in range(6)]
    if rng.random() < 0.3:
        octets = [o.lower() for o in octets]
    return rng.choice([":", ":", "-"]).join(octets)


def _url_credentials(rng: random.Random, first: str) -> tuple[str, str, str]:
    scheme, host = rng.choice([("postgres", "db.internal.example.com:5432/app"), ("mysql", "10.0.3.7:3306/crm"),
                               ("https", "files.example.com/export"), ("ftp", "ftp.example.org/incoming"),
                               ("redis", "cache.example.net:6379/0"), ("amqp", "mq.example.com:5672/")])
    user = rng.choice([first.lower(), "admin", "svc_backup", "deploy"])
    pw = "".join(rng.choice(string.ascii_letters + string.digits + "!$%") for _ in range(rng.randint(8, 14)))
    return f"{scheme}://", f"{user}:{pw}", f"@{host}"


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _date(rng: random.Random, year_lo: int = 1940, year_hi: int = 2005) -> str:
    y, m, d = rng.randint(year_lo, year_hi), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d} {_MONTHS[m - 1]} {y}",
                       f"{_MONTHS[m - 1]} {d}, {y}", f"{d:02d}.{m:02d}.{y}"])


def _address(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.7:
        addr = f"{rng.randint(1, 9899)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
        if rng.random() < 0.3:
            addr += f", {rng.choice(['Apt', 'Suite', 'Unit'])} {rng.randint(1, 40)}{rng.choice(['', 'B', 'C'])}"
        if rng.random() < 0.6:
            city, st = rng.choice(CITIES)
            addr += f", {city}, {st} {rng.randint(10000, 99999)}"
        return addr
    if kind < 0.85:
        return (f"{rng.randint(1, 250)}{rng.choice(['', 'B'])} {rng.choice(STREET_NAMES)} "
                f"{rng.choice(['Street', 'Road', 'Lane'])}, London {rng.choice(['NW1', 'SE15', 'E2', 'W1U'])} "
                f"{rng.randint(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTUWXYZ')}")
    return f"{rng.choice(DE_STREETS)} {rng.randint(1, 120)}, {rng.randint(10000, 99999)} Berlin"


# --- hard negatives -----------------------------------------------------------------------------------

def _negative(rng: random.Random) -> tuple[str, str, str, str]:
    """(prefix, value, suffix, kind)."""
    d = lambda k: "".join(rng.choice(string.digits) for _ in range(k))  # noqa: E731
    kind = rng.choice(["order", "version", "timestamp", "isbn", "tracking", "price", "bad_card", "bad_iban",
                       "date", "invoice"])
    if kind == "order":
        return rng.choice([("Your order number is ", d(10), ".", kind), ("Order #", f"A-{rng.randint(2019, 2025)}-{d(6)}", " shipped.", kind),
                           ("Reference ORD-", f"{d(4)}-{d(4)}-{d(4)}", " was updated.", kind), ("Order ", f"{d(3)}-{d(7)}-{d(7)}", " is on hold.", kind)])
    if kind == "version":
        return rng.choice([("We upgraded to version ", f"{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}", " last night.", kind),
                           ("The fix ships in ", f"v{rng.randint(1, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}", ".", kind),
                           ("Firmware ", f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}", " is required.", kind)])
    if kind == "timestamp":
        y, mo, da = rng.randint(2019, 2025), rng.randint(1, 12), rng.randint(1, 28)
        h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        return rng.choice([("The error was logged at ", f"{y}-{mo:02d}-{da:02d} {h:02d}:{mi:02d}:{s:02d}", ".", kind),
                           ("Last sync: ", f"{y}-{mo:02d}-{da:02d}T{h:02d}:{mi:02d}:{s:02d}Z", ".", kind),
                           ("Logged ", f"{da:02d}/{mo:02d}/{y} {h:02d}:{mi:02d}", " by the system.", kind),
                           ("Epoch ", str(rng.randint(1_500_000_000, 1_750_000_000)), " was recorded.", kind)])
    if kind == "isbn":
        return rng.choice([("See the manual, ISBN ", "978-3-16-148410-0", ".", kind),
                           ("The handbook (ISBN ", "0-306-40615-2", ") is in the library.", kind),
                           ("Reference book ISBN ", "9780306406157", " was ordered.", kind),
                           ("ISBN ", "978-1-4028-9462-6", " is out of print.", kind)])
    if kind == "tracking":
        return rng.choice([("UPS tracking ", f"1Z{rng.choice(['999AA1', '12345E'])}{d(10)}", ".", kind),
                           ("USPS tracking number ", f"9400 1{d(3)} {d(4)} {d(4)} {d(4)} {d(2)}", ".", kind),
                           ("FedEx tracking ", f"{d(4)} {d(4)} {d(4)}", " shows it in transit.", kind)])
    if kind == "price":
        return rng.choice([("The total came to ", f"${rng.randint(1, 9)},{d(3)}.{d(2)}", ".", kind),
                           ("A fee of ", f"€{rng.randint(10, 999)}.{d(2)}", " applies.", kind),
                           ("Budget: ", f"USD {rng.randint(1, 99)},{d(3)}.00", ".", kind)])
    if kind == "bad_card":
        return ("The test value ", _card(rng, valid=False), " was rejected.", kind)
    if kind == "bad_iban":
        return ("The IBAN field contained ", _iban(rng, valid=False), ", which failed validation.", kind)
    if kind == "date":
        return rng.choice([("The meeting is on ", _date(rng, 2020, 2026), ".", kind),
                           ("Invoice due ", _date(rng, 2020, 2026), ".", kind)])
    return ("Invoice ", f"INV-{rng.randint(2019, 2025)}-{d(4)}", " remains unpaid.", kind)


# --- PII sentences ------------------------------------------------------------------------------------

def _pii_sentence(rng: random.Random, b: _Builder, first: str, last: str) -> None:
    kind = rng.choice(["person", "person", "email", "phone", "card", "iban", "ssn", "nino", "nif", "ip", "ip6",
                       "mac", "url", "dob", "address", "address"])
    full = f"{first} {last}"
    if kind == "person":
        form = rng.randrange(9)
        if form == 0:
            b.lit("My name is "); b.pii(full, "PERSON"); b.lit(" and I am writing about my account.")
        elif form == 1:
            b.lit("Dear "); b.pii(full, "PERSON"); b.lit(", thank you for your message.")
        elif form == 2:
            b.lit(f"{rng.choice(TITLES)}. "); b.pii(last, "PERSON"); b.lit(" approved the change.")
        elif form == 3:
            b.lit("I spoke with "); b.pii(full, "PERSON"); b.lit(" from the billing team yesterday.")
        elif form == 4:
            b.pii(full, "PERSON"); b.lit(" called twice about the delayed delivery.")
        elif form == 5:
            b.lit("Best regards, "); b.pii(full, "PERSON"); b.lit(".")
        elif form == 6:
            b.lit("Please forward this to "); b.pii(first, "PERSON"); b.lit(" when she is back.")
        elif form == 7:
            b.lit("The form was signed by "); b.pii(f"{first} {rng.choice(string.ascii_uppercase)}. {last}", "PERSON"); b.lit(".")
        else:
            b.lit("Thanks, "); b.pii(first, "PERSON"); b.lit("!")
    elif kind == "email":
        local = rng.choice([f"{first.lower()}.{last.lower().replace(' ', '')}", f"{first[0].lower()}{last.lower().replace(' ', '')}{rng.randint(1, 99)}",
                            f"{first.lower()}_{rng.randint(1970, 2005)}"]).replace("'", "")
        b.lit(rng.choice(["You can reach me at ", "Email: ", "Send the documents to "]))
        b.pii(f"{local}@{rng.choice(EMAIL_DOMAINS)}", "EMAIL"); b.lit(".")
    elif kind == "phone":
        b.lit(rng.choice(["Call me on ", "My phone number is ", "The office line is ", "Reach the site at "]))
        b.pii(_phone(rng), "PHONE"); b.lit(rng.choice([".", " after 5pm.", " any time."]))
    elif kind == "card":
        b.lit(rng.choice(["Please charge the card ", "The payment used card number ", "Card: "]))
        b.pii(_card(rng), "CREDIT_CARD"); b.lit(rng.choice([".", " for the renewal.", ", expiring next year."]))
    elif kind == "iban":
        b.lit(rng.choice(["Refunds go to IBAN ", "Our bank account is ", "Transfer to "]))
        b.pii(_iban(rng), "IBAN"); b.lit(".")
    elif kind == "ssn":
        b.lit(rng.choice(["My SSN is ", "Social security number: ", "The applicant's SSN, "]))
        b.pii(_ssn(rng), "US_SSN"); b.lit(rng.choice([".", ", for the tax form."]))
    elif kind == "nino":
        b.lit(rng.choice(["My National Insurance number is ", "NI number: "]))
        b.pii(_nino(rng), "UK_NINO"); b.lit(".")
    elif kind == "nif":
        b.lit(rng.choice(["Mi DNI es ", "The tenant's NIF is "]))
        b.pii(_es_nif(rng), "ES_NIF"); b.lit(".")
    elif kind == "ip":
        b.lit(rng.choice(["The request came from ", "Login attempts from IP ", "The printer is at "]))
        b.pii(_ipv4(rng), "IP_ADDRESS"); b.lit(rng.choice([".", " this morning."]))
    elif kind == "ip6":
        b.lit("The device registered with address "); b.pii(_ipv6(rng), "IP_ADDRESS"); b.lit(".")
    elif kind == "mac":
        b.lit(rng.choice(["The laptop's MAC address is ", "Whitelist hardware address "]))
        b.pii(_mac(rng), "MAC_ADDRESS"); b.lit(".")
    elif kind == "url":
        pre, cred, post = _url_credentials(rng, first)
        b.lit("The connection string is "); b.lit(pre); b.pii(cred, "URL_CREDENTIALS")
        host = re.match(r"@(\d+\.\d+\.\d+\.\d+)(.*)", post)
        if host:  # an IP address as host is itself an IP address in the text
            b.lit("@"); b.pii(host.group(1), "IP_ADDRESS"); b.lit(host.group(2))
        else:
            b.lit(post)
        b.lit(" for now.")
    elif kind == "dob":
        pre, post = rng.choice([("I was born on ", "."), ("Date of birth: ", ", per the form."), ("DOB ", "."),
                                ("The patient (born ", ") was admitted."), ("Her birthday is ", " as listed.")])
        b.lit(pre); b.pii(_date(rng), "DATE_OF_BIRTH"); b.lit(post)
    else:
        b.lit(rng.choice(["Please ship it to ", "I live at ", "Our new office is at ", "Send mail to "]))
        b.pii(_address(rng), "STREET_ADDRESS"); b.lit(".")


def make_doc(index: int, seed: int = 0, target_words: int = 185) -> Doc:
    rng = random.Random(seed * 1_000_003 + index)
    b = _Builder()
    n_pii = rng.randint(5, 9)
    n_neg = rng.randint(2, 4)
    n_fill = 30
    slots = ["pii"] * n_pii + ["neg"] * n_neg + ["fill"] * n_fill
    rng.shuffle(slots)
    fillers = rng.sample(FILLER, len(FILLER))
    fi = 0
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    for slot in slots:
        if slot == "fill":
            if b.words >= target_words - 20 and n_pii <= 0 and n_neg <= 0:
                continue
            if b.words >= target_words:
                continue
            b.lit(fillers[fi % len(fillers)])
            fi += 1
        elif slot == "pii":
            n_pii -= 1
            if rng.random() < 0.5:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            _pii_sentence(rng, b, first, last)
        else:
            n_neg -= 1
            pre, val, post, kind = _negative(rng)
            b.lit(pre); b.neg(val, kind); b.lit(post)
        b.lit(" ")
    text = "".join(b.parts).rstrip()
    return Doc(text, b.spans, b.negatives)


def iter_corpus(n: int, seed: int = 0, start: int = 0) -> Iterator[Doc]:
    for i in range(start, start + n):
        yield make_doc(i, seed)


def iter_labelled(n: int, seed: int = 0) -> Iterator[tuple[str, list[tuple[int, int, str]]]]:
    """(text, [(start, end, entity_type), ...]) for evaluation."""
    for doc in iter_corpus(n, seed):
        yield doc.text, doc.spans


def write_jsonl(path: Path | str, n: int, seed: int = 0, with_spans: bool = False) -> int:
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        for doc in iter_corpus(n, seed):
            row: dict = {"data": {"text": doc.text}}
            if with_spans:
                row["spans"] = [list(s) for s in doc.spans]
                row["negatives"] = [list(s) for s in doc.negatives]
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output .jsonl path ('-' for stdout)")
    ap.add_argument("--with-spans", action="store_true", help="add ground-truth spans and negatives")
    args = ap.parse_args(argv)
    if args.out == "-":
        for doc in iter_corpus(args.n, args.seed):
            row: dict = {"data": {"text": doc.text}}
            if args.with_spans:
                row["spans"], row["negatives"] = doc.spans, doc.negatives
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 0
    count = write_jsonl(args.out, args.n, args.seed, args.with_spans)
    print(f"wrote {count} tasks to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
