"""Check digits that separate real identifiers from look-alike numbers."""

from __future__ import annotations

# ISO 13616 registry lengths (country code -> total IBAN length).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

NIF_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


# Luhn on ASCII digits without a Python-level loop: the doubled digits' digit sums by translation.
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(digits: str) -> bool:
    if digits.isascii() and digits.isdigit():
        rev = digits.encode()[::-1]
        return (sum(rev[0::2]) + sum(rev[1::2].translate(_LUHN_DOUBLE)) - 48 * len(rev)) % 10 == 0
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_prefix_ok(digits: str) -> bool:
    """Issuer ranges of the major networks, so a Luhn-valid order number is not called a card."""
    n = len(digits)
    d1, d2, d4 = digits[0], int(digits[:2]), int(digits[:4])
    if d1 == "4":
        return n in (13, 16, 19)
    if 51 <= d2 <= 55 or 2221 <= d4 <= 2720:
        return n == 16
    if d2 in (34, 37):
        return n == 15
    if d4 == 6011 or d2 == 65 or 644 <= int(digits[:3]) <= 649:
        return n in (16, 19)
    if d2 == 35 and 3528 <= d4 <= 3589:
        return 16 <= n <= 19
    if d2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if d2 == 62:
        return 16 <= n <= 19
    return False


def card_groups_ok(raw: str) -> bool:
    """Written cards come plain or in the networks' groupings: 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners)."""
    if raw.isdigit():
        return True
    groups = [len(g) for g in raw.replace("-", " ").split(" ")]
    if groups[:2] == [4, 6] and len(groups) == 3:
        return groups[2] in (4, 5)
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


# Letters as their base-36 values ("A" -> "10" ... "Z" -> "35"), digits unchanged: the IBAN mod-97 number.
_BASE36 = str.maketrans({c: str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"})


def iban_ok(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    if rearranged.isascii():
        num = rearranged.translate(_BASE36)
    else:  # other Unicode letters/digits: the general (slow) path gives the same answer as before
        num = "".join(str(int(c, 36)) for c in rearranged)
    return int(num) % 97 == 1


def es_nif_ok(body: str, letter: str) -> bool:
    """DNI (8 digits) or NIE (X/Y/Z + 7 digits) with its mod-23 control letter."""
    if body[0] in "XYZ":
        body = str("XYZ".index(body[0])) + body[1:]
    return body.isdigit() and NIF_LETTERS[int(body) % 23] == letter
