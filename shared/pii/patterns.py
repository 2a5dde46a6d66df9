"""Offline pattern recognizers: one regex per entity type, validated by checksums.

Each `find_*` scans the whole text for one entity type and appends `Span`s. They are the readable
reference: `scanner.scan` finds the same entities with one pass over the text and anchored matches of
these same compiled patterns, which is what the redactor runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from shared.pii.checksums import IBAN_LENGTHS, card_groups_ok, card_prefix_ok, es_nif_ok, iban_ok, luhn_ok
from shared.pii.entities import EntityType, Span

E = EntityType

# --- email and credentials in URLs -------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://([^\s:/?#@\[\]]+(?::[^\s/?#@]*)?)@[^\s/?#@]+")


def find_email(text: str, out: list[Span]) -> None:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        out.append(Span(m.start(), m.end(), E.EMAIL))


def find_url_credentials(text: str, out: list[Span]) -> None:
    """Only the userinfo (`user:password`) is redacted; scheme, host and path stay readable."""
    if "://" not in text:
        return
    for m in _URL_CREDENTIALS.finditer(text):
        out.append(Span(m.start(1), m.end(1), E.URL_CREDENTIALS))


# --- phone numbers ------------------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?<![\w+./-])(?<!\d[ .-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){1,5}"  # +44 20 7946 0958, +1 (415) 555-0123
    r"|(?:1[ .-])?\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"  # (415) 555-0123
    r"|(?:1[ .-])?[2-9]\d{2}([ .-])\d{3}\1\d{4}"  # 415-555-0123, 415.555.0123
    r"|0\d(?: \d{2}){4}"  # 01 23 45 67 89
    r"|0\d{2,4}[ /-]\d{3,4}(?:[ -]?\d{3,4})?"  # 020 7946 0958, 07700 900123, 030 12345678
    r")(?![\w/-])(?![.:,]\d)(?![ .-]\d)"
)
_NOT_PHONE_BEFORE = re.compile(
    r"(?i)\b(?:tracking|order|invoice|ref|reference|isbn|sku|serial|s/n|case|ticket|account|acct|part|batch|lot)"
    r"\b(?:\s+(?:no\.?|number|num|#|id|code))?\s*[:#]?\s*$"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text\s+me)\b[^\w\n]{0,4}(?:\w+[^\w\n]{1,3}){0,2}?"
    r"(\+?\d{10,13})\b"
)


def find_phone(text: str, out: list[Span]) -> None:
    for m in _PHONE.finditer(text):
        s, e = m.span()
        n = sum(c.isdigit() for c in text[s:e])
        if 8 <= n <= 15 and not _NOT_PHONE_BEFORE.search(text, max(0, s - 28), s):
            out.append(Span(s, e, E.PHONE))
    for m in _PHONE_CONTEXT.finditer(text):
        out.append(Span(m.start(1), m.end(1), E.PHONE))


# --- payment and bank identifiers ---------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w-])(?![ -]\d)(?!\.\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?")


_IBAN_LIKE_BEFORE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){1,7} ?$")


_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def inside_iban_like(text: str, start: int) -> bool:
    """Digits that continue an IBAN-shaped sequence (even a checksum-invalid one) are not a card."""
    # Such a sequence ends right before `start` (or before a final newline) in a group character or a
    # space after one: most candidates fail this without the search.
    q = start - 1
    if q >= 0 and text[q] == "\n":
        q -= 1
    if q >= 0 and text[q] == " ":
        q -= 1
    if q < 0 or text[q] not in _IBAN_CHARS:
        return False
    return _IBAN_LIKE_BEFORE.search(text, max(0, start - 40), start) is not None


def find_credit_card(text: str, out: list[Span]) -> None:
    for m in _CARD.finditer(text):
        raw = m.group()
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1:
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if (card_groups_ok(raw) and card_prefix_ok(digits) and luhn_ok(digits) and len(set(digits)) > 1
                and not inside_iban_like(text, m.start()) and not _NOT_PHONE_BEFORE.search(text, max(0, m.start() - 28), m.start())):
            out.append(Span(m.start(), m.end(), E.CREDIT_CARD))


def find_iban(text: str, out: list[Span]) -> None:
    for m in _IBAN.finditer(text):
        raw = m.group()
        want = IBAN_LENGTHS.get(raw[:2])
        if want is None:
            continue
        # The greedy pattern may swallow a following upper-case word: cut at the country's length.
        count = 0
        cut = None
        for i, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == want:
                    cut = i + 1
                    break
        if cut is None:
            continue
        end = m.start() + cut
        if end < len(text) and text[end].isalnum():
            continue
        if iban_ok(raw[:cut].replace(" ", "")):
            out.append(Span(m.start(), end, E.IBAN))


# --- national identifiers -----------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}([- .])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])(?!\.\d)")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\W{0,5}(\d{9})\b")
_SSN_ADVERTISED = {"078051120", "219099999", "123456789"}
_NINO = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
)
_NIF = re.compile(r"\b([XYZ]\d{7}|\d{8})-?([A-Z])\b")


def find_us_ssn(text: str, out: list[Span]) -> None:
    for m in _SSN.finditer(text):
        if m.group().replace(m.group(1), "") not in _SSN_ADVERTISED:
            out.append(Span(m.start(), m.end(), E.US_SSN))
    if "SSN" in text or "ecurity" in text or "ssn" in text:
        for m in _SSN_CONTEXT.finditer(text):
            d = m.group(1)
            if d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000":
                out.append(Span(m.start(1), m.end(1), E.US_SSN))


def find_uk_nino(text: str, out: list[Span]) -> None:
    for m in _NINO.finditer(text):
        out.append(Span(m.start(), m.end(), E.UK_NINO))


def find_es_nif(text: str, out: list[Span]) -> None:
    for m in _NIF.finditer(text):
        if es_nif_ok(m.group(1), m.group(2)):
            out.append(Span(m.start(), m.end(), E.ES_NIF))


# --- network identifiers ------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?:/\d{{1,2}})?(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\bfirmware|\brev\.?|\bupdate)\W{0,3}$")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?:%\w+)?(?![\w:])"
)
_MAC = re.compile(
    r"(?<![\w:.-])(?:[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:-])(?!\.\w)"
)


def find_ip(text: str, out: list[Span]) -> None:
    if text.count(".") >= 3:
        for m in _IPV4.finditer(text):
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
                continue
            out.append(Span(m.start(), m.end(), E.IP_ADDRESS))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            cand = m.group().split("%", 1)[0]
            if cand.count(":") < 2 or sum(1 for g in cand.split(":") if g) < 2:
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            out.append(Span(m.start(), m.end(), E.IP_ADDRESS))


def find_mac(text: str, out: list[Span]) -> None:
    for m in _MAC.finditer(text):
        out.append(Span(m.start(), m.end(), E.MAC_ADDRESS))


# --- dates of birth -----------------------------------------------------------------------------------

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
          r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DOB_CONTEXT = re.compile(
    r"(?i)\b(?:born(?:\s+on)?|d\.?\s?o\.?\s?b\.?|date\s+of\s+birth|birth\s*date|birthday|b\.\s?d\.)(?=\W)"
)
_DATE = re.compile(
    rf"(?i)(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}"
    rf"|\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?\s+\d{{4}}"
    rf"|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})(?!\d)"
)


def find_date_of_birth(text: str, out: list[Span]) -> None:
    low = text.lower()
    if "born" not in low and "dob" not in low and "birth" not in low and "d.o.b" not in low and "b. d" not in low:
        return
    for m in _DOB_CONTEXT.finditer(text):
        d = _DATE.search(text, m.end(), m.end() + 48)
        if d:
            out.append(Span(d.start(), d.end(), E.DATE_OF_BIRTH))


# --- street addresses ---------------------------------------------------------------------------------

_SUFFIX = (r"(?:Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter"
           r"|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Close|Crescent|Cres|Gardens|Gdns|Grove|Row"
           r"|Trail|Trl|Alley|Mews|Walk|Plaza|Plz|Loop|Pike|Heights|Hts|Expressway|Freeway|Broadway)")
_CITY = r"[A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2}"
_ZIP_OR_POST = r"(?:\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})"
_STREET = re.compile(
    rf"(?<![\w.,/-])\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})?,?\s+(?:(?:N|S|E|W|North|South|East|West)\.?\s+)?"
    rf"(?:(?:[A-Z][a-z'’]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,4}}{_SUFFIX}\b\.?"
    rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    rf"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|#)\.?\s*#?[A-Za-z0-9-]{{1,6}}\b)?"
    rf"(?:,\s+{_CITY}(?:(?:,\s*[A-Z]{{2}})?\s+{_ZIP_OR_POST}\b|,\s*[A-Z]{{2}}\b|(?=[.;:)\n]|$)))?"
)
_STREET_EU = re.compile(
    r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|laan|straat|gracht)"
    r"\s+\d{1,4}[a-z]?\b(?:,\s*\d{4,5}(?:\s?[A-Z]{2})?\s+[A-ZÄÖÜ][a-zäöüß]+)?"
    r"|(?<![\w.,/-])\d{1,4}(?:bis|ter)?,?\s+(?:rue|chemin|allée|impasse|quai|calle)"
    r"\s+(?:(?:de|du|des|la|le|del|della)\s+|[ld][’'])*[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+){0,3}"
)


def find_street_address(text: str, out: list[Span]) -> None:
    for m in _STREET.finditer(text):
        out.append(Span(m.start(), m.end(), E.STREET_ADDRESS))
    for m in _STREET_EU.finditer(text):
        out.append(Span(m.start(), m.end(), E.STREET_ADDRESS))


REFERENCE_FINDERS: dict[EntityType, Callable[[str, list[Span]], None]] = {
    E.URL_CREDENTIALS: find_url_credentials,
    E.EMAIL: find_email,
    E.IBAN: find_iban,
    E.CREDIT_CARD: find_credit_card,
    E.US_SSN: find_us_ssn,
    E.UK_NINO: find_uk_nino,
    E.ES_NIF: find_es_nif,
    E.MAC_ADDRESS: find_mac,
    E.IP_ADDRESS: find_ip,
    E.DATE_OF_BIRTH: find_date_of_birth,
    E.PHONE: find_phone,
    E.STREET_ADDRESS: find_street_address,
}
