"""Single-pass scan for every pattern entity.

CPython's `re` costs ~20-50 ns per text position per pattern, so a dozen full-text regexes cost more
than the rest of redaction together. Here one cheap regex finds runs of digits and separators, and
the per-entity patterns from `patterns` are only tried *anchored* at the start of a run or of a token
inside it, dispatched on the run's shape. Email, URL credentials, MAC/IPv6 addresses, dates of birth
and continental street names are reached from `str.find` on their marker (`@`, `://`, `:`/`-`, a
context word, a street word). Results equal the reference finders' (tested on the corpus).

Findings are collected as plain `(start, end, entity_type)` tuples (`scan_raw`): most are dropped again
by overlap resolution, and a frozen dataclass costs ~20x a tuple to build. Cheap checks that mirror each
pattern's leading look-behind (the character before the candidate) skip matches that cannot succeed.
"""

from __future__ import annotations

import re
import string

from shared.pii import patterns as P
from shared.pii.checksums import IBAN_LENGTHS, card_groups_ok, card_prefix_ok, es_nif_ok, iban_ok, luhn_ok
from shared.pii.entities import EntityType, Span

E = EntityType
# Enum members as module constants: `EntityType.X` is a slow class-attribute lookup in the hot loops.
T_CREDIT_CARD = E.CREDIT_CARD
T_DATE_OF_BIRTH = E.DATE_OF_BIRTH
T_EMAIL = E.EMAIL
T_ES_NIF = E.ES_NIF
T_IBAN = E.IBAN
T_IP_ADDRESS = E.IP_ADDRESS
T_MAC_ADDRESS = E.MAC_ADDRESS
T_PHONE = E.PHONE
T_STREET_ADDRESS = E.STREET_ADDRESS
T_UK_NINO = E.UK_NINO
T_URL_CREDENTIALS = E.URL_CREDENTIALS
T_US_SSN = E.US_SSN

Raw = tuple[int, int, EntityType]

# Starts with a plain character class (not an optional "+"/"("), which lets `re` skip ahead quickly.
_RUN = re.compile(r"[\d+(][\d()/:-]*(?:[ .](?=[\d(])[\d()/:-]*)*")
# `\d` is any Unicode decimal digit, a slow category test per character; where the text holds no
# decimal digit beyond 0-9 (all of Latin-1) the ASCII class is the same set and scans twice as fast.
_RUN_ASCII = re.compile(r"[0-9+(][0-9()/:-]*(?:[ .](?=[0-9(])[0-9()/:-]*)*")
_HEX = frozenset("0123456789abcdefABCDEF")
_HEXCOLON = _HEX | {":"}
_SCHEME = frozenset(string.ascii_letters + string.digits + "+.-")
_PHONE_CONTEXT_BEFORE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text\s+me)\b(?:[^\w\n]{1,4}\w+){0,2}[^\w\n]{1,4}$"
)
_SSN_CONTEXT_BEFORE = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\W{1,5}$")
# Continental addresses put the number after the street name ("Hauptstraße 5") or before a street word
# that is lower case ("12 rue de la Paix"); both are reached from the number's digit run.
_EU_SUFFIXES = ("straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "laan", "straat", "gracht")
_EU_PREFIXES = (" rue ", " chemin ", " allée ", " impasse ", " quai ", " calle ", ", rue ", "bis rue ", "ter rue ")
_NOT_PHONE_BEFORE = P._NOT_PHONE_BEFORE
_UPPER_ASCII = frozenset(string.ascii_uppercase)
_DOB_WORDS = ("born", "dob", "d.o.b", "date of birth", "birth", "b. d")


# A match of _NOT_PHONE_BEFORE ends (before whitespace and one ':' or '#') in one of these words.
_NOT_PHONE_ENDINGS = ("tracking", "order", "invoice", "ref", "reference", "isbn", "sku", "serial", "s/n", "case",
                      "ticket", "account", "acct", "part", "batch", "lot", "no", "no.", "number", "num", "#", "id",
                      "code")


def _not_phone_before(text: str, p: int) -> bool:
    """Reference numbers written like phone numbers: 'tracking 0784 1336 3514', 'order no. 020 ...'."""
    lo = max(0, p - 28)
    window = text[lo:p]
    if window.isascii():  # elsewhere re's Unicode case folding could match what lower() does not
        tail = window.lower().rstrip()
        if not (tail.endswith(_NOT_PHONE_ENDINGS)
                or (tail[-1:] == ":" and tail[:-1].rstrip().endswith(_NOT_PHONE_ENDINGS))):
            return False
    return _NOT_PHONE_BEFORE.search(text, lo, p) is not None


def _iban_at(text: str, start: int, out: list[Raw]) -> int:
    m = P._IBAN.match(text, start)
    if m is None:
        return -1
    raw = m.group()
    want = IBAN_LENGTHS.get(raw[:2])
    if want is None:
        return -1
    if len(raw) - raw.count(" ") < want:
        return -1
    i = want - 1  # becomes the index in raw of the want-th non-space character
    sp = raw.find(" ")
    while 0 <= sp <= i:
        i += 1
        sp = raw.find(" ", sp + 1)
    end = start + i + 1
    if end < len(text) and text[end].isalnum():
        return -1
    if iban_ok(raw[:i + 1].replace(" ", "")):
        out.append((start, end, T_IBAN))
        return end
    return -1


def _words_before(text: str, lo: int, p: int, words: re.Pattern[str]) -> bool:
    """False when a case-insensitive pattern that needs one of `words` cannot match in text[lo:p].
    Only decided for ASCII windows: elsewhere re's Unicode case folding ('ſ' ~ 's') could match."""
    window = text[lo:p]
    return not window.isascii() or words.search(window.lower()) is not None


_SSN_WORDS = re.compile("ssn|social")
_PHONE_WORDS = re.compile("phone|tel|mobile|cell|call|fax|whatsapp|sms|text")
_VERSION_WORDS = re.compile("v|release|build|firmware|update")
_STREET_NUMBER = re.compile(r"\d{1,5}(?:-\d{1,5})?(?: \d{1,3})?")


def _street_number_ok(text: str, p: int, e: int) -> bool:
    """Whether the run text[p:e] can open a `_STREET` match: a house number ("12", "12-14"), maybe then
    an ordinal's digits ("742 12|th"); after a lone number and a space, a capital or a digit."""
    d = text[p:e]
    if d.isdecimal():
        if len(d) > 5:
            return False
        if text[e] == " ":
            c = text[e + 1]
            return c in _UPPER_ASCII or c.isdecimal() or c.isspace()
        return True
    return _STREET_NUMBER.fullmatch(d) is not None


def _at(text: str, p: int, e: int, active: frozenset[EntityType], out: list[Raw]) -> int:
    """Try every applicable entity at position p (run ends at e). Returns the end of a match or -1."""
    c = text[p]
    n = e - p
    if c == "+" or c == "(":
        if T_PHONE in active:
            m = P._PHONE.match(text, p)
            if m and 8 <= sum(map(str.isdigit, m.group())) <= 15:
                out.append((p, m.end(), T_PHONE))
                return m.end()
        return -1
    prev = text[p - 1] if p else " "
    # Letter-prefixed identifiers whose digits start this run: IBAN, NINO, NIE.
    if prev.isupper():
        if p >= 2 and text[p - 2].isupper() and (p == 2 or not text[p - 3].isalnum()):
            if T_IBAN in active:
                end = _iban_at(text, p - 2, out)
                if end > 0:
                    return end
            if T_UK_NINO in active:
                m = P._NINO.match(text, p - 2)
                if m:
                    out.append((p - 2, m.end(), T_UK_NINO))
                    return m.end()
        if T_ES_NIF in active and prev in "XYZ" and (p == 1 or not text[p - 2].isalnum()):
            m = P._NIF.match(text, p - 1)
            if m and es_nif_ok(m.group(1), m.group(2)):
                out.append((p - 1, m.end(), T_ES_NIF))
                return m.end()
        return -1
    if prev.isalnum() or prev == "_":
        return -1  # every pattern tried below needs a non-word character (or nothing) before p
    if (prev == " " and p >= 3 and text[p - 2].isupper() and text[p - 3].isupper()
            and (p == 3 or not text[p - 4].isalnum()) and T_UK_NINO in active):
        m = P._NINO.match(text, p - 3)
        if m:
            out.append((p - 3, m.end(), T_UK_NINO))
            return m.end()
    # The patterns' look-behinds: '-' or '.' before p rules out a card, SSN, phone and street number;
    # a digit and a space ("1234 |5678") a card and a phone.
    blocked = prev == "-" or prev == "."
    if n >= 7:
        spaced_number = prev == " " and p >= 2 and text[p - 2].isdecimal()
        if n >= 13 and not blocked and not spaced_number and T_CREDIT_CARD in active:
            m = P._CARD.match(text, p)
            if m:
                raw = m.group()
                digits = raw.replace(" ", "").replace("-", "")
                if (not (" " in raw and "-" in raw) and card_groups_ok(raw) and card_prefix_ok(digits)
                        and luhn_ok(digits) and len(set(digits)) > 1 and not P.inside_iban_like(text, p)
                        and not _not_phone_before(text, p)):
                    out.append((p, m.end(), T_CREDIT_CARD))
                    return m.end()
        if n >= 11 and not blocked and text[p + 3] in "- ." and T_US_SSN in active:
            m = P._SSN.match(text, p)
            if m:
                if m.group().replace(m.group(1), "") not in P._SSN_ADVERTISED:
                    out.append((p, m.end(), T_US_SSN))
                return m.end()
        if prev != "." and "." in text[p + 1:p + 4] and T_IP_ADDRESS in active:
            m = P._IPV4.match(text, p)
            if m:
                lo = p - 12 if p > 12 else 0
                if not (_words_before(text, lo, p, _VERSION_WORDS) and P._VERSION_BEFORE.search(text, lo, p)):
                    out.append((p, m.end(), T_IP_ADDRESS))
                return m.end()
        if n == 8 and e < len(text) and (text[e].isupper() or text[e] == "-") and T_ES_NIF in active:
            m = P._NIF.match(text, p)
            if m and es_nif_ok(m.group(1), m.group(2)):
                out.append((p, m.end(), T_ES_NIF))
                return m.end()
        if not blocked and not spaced_number and prev != "+" and prev != "/" and T_PHONE in active:
            m = P._PHONE.match(text, p)
            if m and 8 <= sum(map(str.isdigit, m.group())) <= 15 and not _not_phone_before(text, p):
                out.append((p, m.end(), T_PHONE))
                return m.end()
        if 9 <= n <= 13 and text[p:e].isdigit():
            if n == 9 and T_US_SSN in active:
                lo = p - 30 if p > 30 else 0
                if _words_before(text, lo, p, _SSN_WORDS) and _SSN_CONTEXT_BEFORE.search(text, lo, p):
                    d = text[p:e]
                    if d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000":
                        out.append((p, e, T_US_SSN))
                        return e
            if n >= 10 and T_PHONE in active:
                lo = p - 40 if p > 40 else 0
                if _words_before(text, lo, p, _PHONE_WORDS) and _PHONE_CONTEXT_BEFORE.search(text, lo, p):
                    out.append((p, e, T_PHONE))
                    return e
        if n > 11:
            return -1
    if T_STREET_ADDRESS in active:
        if (not blocked and prev != "," and prev != "/" and e < len(text) - 4
                and (text[e] == " " or text[e].isalpha() or text[e] == ",")):
            m = P._STREET.match(text, p) if _street_number_ok(text, p, e) else None
            if m is None and text.startswith(_EU_PREFIXES, e):
                m = P._STREET_EU.match(text, p)
            if m:
                out.append((p, m.end(), T_STREET_ADDRESS))
                return m.end()
        # "Hauptstraße 5": every street suffix ends in one of these characters (lower-cased).
        if n <= 4 and prev == " " and p >= 4 and text[p - 2] in "eEgGzZnNtT.":
            w = text.rfind(" ", max(0, p - 40), p - 1) + 1
            if text[w:p - 1].lower().endswith(_EU_SUFFIXES):
                m = P._STREET_EU.match(text, w)
                if m and m.end() > p:
                    out.append((w, m.end(), T_STREET_ADDRESS))
                    return m.end()
    return -1


def _only_ascii_digits(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _scan_runs(text: str, active: frozenset[EntityType], out: list[Raw]) -> None:
    consumed = 0
    for run in (_RUN_ASCII if _only_ascii_digits(text) else _RUN).finditer(text):
        s, e = run.span()
        if s < consumed:
            continue
        while e > s and text[e - 1] in " .-/:(":
            e -= 1
        p = s
        while p < e:
            end = _at(text, p, e, active, out)
            if end > 0:
                consumed = end
                if end >= e:
                    break
                p = end
                while p < e and not (text[p].isdigit() or text[p] in "+("):
                    p += 1
                continue
            nxt = text.find(" ", p, e)
            if nxt < 0:
                break
            p = nxt + 1


# Separators worth a look (the conditions of `_scan_colons`' loop, as patterns whose literal first
# character lets `re` skip ahead fast): before and after hex digits, or "::"; "aa:bb:" for a MAC alone.
_IP6_OR_MAC_COLON = re.compile(r":(?:(?=:)|(?<=[0-9A-Fa-f]:)(?=[0-9A-Fa-f]))")
_MAC_COLON = re.compile(r":(?<=[0-9A-Fa-f]{2}:)(?=[0-9A-Fa-f][\s\S]:)")
# With '-' only the six-group form can match (a date's "2024-03-15" is not looked at).
_MAC_HYPHEN = re.compile(r"-(?<=[0-9A-Fa-f]{2}-)(?=[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2})")


def _scan_colons(text: str, active: frozenset[EntityType], out: list[Raw]) -> None:
    """MAC addresses (aa:bb:.. / aa-bb-..) and IPv6 addresses, reached from their separators."""
    want_mac = T_MAC_ADDRESS in active
    want_ip6 = T_IP_ADDRESS in active
    last = len(text) - 3
    for sep, candidates in ((":", _IP6_OR_MAC_COLON if want_ip6 else _MAC_COLON), ("-", _MAC_HYPHEN)):
        if sep == "-" and not want_mac:
            break
        pos = 2
        while True:
            found = candidates.search(text, pos)
            if found is None:
                break
            i = found.start()
            if i >= last:
                break
            pos = i + 1
            if (want_mac and text[i + 3] == sep and text[i - 2] in _HEX and text[i - 1] in _HEX
                    and text[i + 1] in _HEX):
                m = P._MAC.match(text, i - 2)
                if m:
                    out.append((i - 2, m.end(), T_MAC_ADDRESS))
                    pos = m.end() + 1
                    continue
            if want_ip6 and sep == ":":
                j = i
                while j > 0 and text[j - 1] in _HEXCOLON:
                    j -= 1
                m = P._IPV6.match(text, j)
                if m:
                    cand = m.group().split("%", 1)[0]
                    groups = cand.split(":")
                    # Without "::" an address has 8 groups (the last two may be IPv4): "10:32:11" is not one,
                    # and ipaddress would say so only through a costly exception.
                    if (len(groups) >= 3 and len(groups) - groups.count("") >= 2
                            and ("::" in cand or len(groups) + ("." in groups[-1]) == 8)):
                        try:
                            P.ipaddress.IPv6Address(cand)
                        except ValueError:
                            pass
                        else:
                            out.append((j, m.end(), T_IP_ADDRESS))
                    pos = m.end() + 1


_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+-]*")


def _scan_markers(text: str, active: frozenset[EntityType], out: list[Raw]) -> None:
    if T_EMAIL in active:
        i = text.find("@")
        last = -1
        while i > 0:
            # The local part's characters right before '@' (at most 64), matched on the reversed window.
            window = text[i - 64 if i > 64 else 0:i]
            j = i - _EMAIL_LOCAL_REVERSED.match(window[::-1]).end()
            while j < i and not text[j].isalnum():
                j += 1
            if j < i and j >= last:
                m = P._EMAIL.match(text, j)
                if m:
                    out.append((j, m.end(), T_EMAIL))
                    last = m.end()
            i = text.find("@", i + 1)
    if T_URL_CREDENTIALS in active:
        i = text.find("://")
        while i > 0:
            j = i
            while j > 0 and i - j < 16 and text[j - 1] in _SCHEME:
                j -= 1
            m = P._URL_CREDENTIALS.match(text, j)
            if m:
                out.append((m.start(1), m.end(1), T_URL_CREDENTIALS))
            i = text.find("://", i + 3)
    if T_DATE_OF_BIRTH in active:
        low = text.lower()
        birth = low.find("birth")
        for word in _DOB_WORDS:
            if word == "birth":
                i = birth
            elif word == "date of birth":  # holds "birth" 8 characters in
                i = low.find(word, birth - 8 if birth > 8 else 0) if birth >= 0 else -1
            else:
                i = low.find(word)
            while i >= 0:
                m = P._DOB_CONTEXT.match(text, i)
                if m:
                    d = P._DATE.search(text, m.end(), m.end() + 48)
                    if d:
                        out.append((d.start(), d.end(), T_DATE_OF_BIRTH))
                i = low.find(word, i + len(word))


def scan_raw(text: str, active: frozenset[EntityType], out: list[Raw]) -> None:
    """Append `(start, end, entity_type)` for every pattern-entity finding of the active entity types
    (overlaps not yet resolved)."""
    _scan_runs(text, active, out)
    if T_MAC_ADDRESS in active or T_IP_ADDRESS in active:
        _scan_colons(text, active, out)
    _scan_markers(text, active, out)


def scan(text: str, active: frozenset[EntityType], out: list[Span]) -> None:
    """`scan_raw` with `Span`s."""
    raw: list[Raw] = []
    scan_raw(text, active, raw)
    out.extend(Span(s, e, t) for s, e, t in raw)
