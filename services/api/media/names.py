"""File names from clients, archives and buckets: checked for traversal, then reduced to a safe display name.

A name is only ever shown back (Content-Disposition, listings); objects are stored under generated keys,
so a name can never choose where bytes land. Names that try to climb out (`../`, absolute paths, drive
letters, NUL) are refused rather than quietly repaired: the sender is told.
"""

from __future__ import annotations

import re
import unicodedata

from shared.errors import BadRequest

MAX_NAME_CHARS = 255
_UNSAFE = re.compile(r"[^\w.\- ()+,=@\[\]]", re.UNICODE)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeFileName(BadRequest):
    type, title = "unsafe-file-name", "Unsafe file name"


def check_member_path(name: str) -> str:
    """Refuse a path (archive member, object key, uploaded file name) that could escape a directory."""
    if not isinstance(name, str) or not name:
        raise UnsafeFileName("file name is empty", name=name)
    if "\x00" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UnsafeFileName("file name contains NUL or control characters", name=repr(name))
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise UnsafeFileName(f"file name {name!r} is an absolute path", name=name)
    if any(segment == ".." for segment in normalised.split("/")):
        raise UnsafeFileName(f"file name {name!r} climbs out of its directory ('..')", name=name)
    return name


def display_name(name: str | None, fallback: str = "file") -> str:
    """The last path segment, NFC-normalised, with anything outside a conservative set replaced by '_'."""
    if not name:
        return fallback
    check_member_path(name)
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base:
        return fallback
    if len(base) > MAX_NAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        base = base[: MAX_NAME_CHARS - len(keep) - 1] + ("." + keep if keep else "")
    return base
