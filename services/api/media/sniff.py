"""What a file really is, from its first bytes (magic numbers), and whether that matches what was declared.

Only the types in `SUPPORTED` are accepted as media. A declared type (multipart Content-Type) or a file
name extension that names a different supported type is a mismatch: someone is lying about the content.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.errors import UnsupportedMediaType

SNIFF_BYTES = 4096  # enough for every signature here and a fair look at text

JPEG, PNG, WEBP, GIF, TIFF = "image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff"
WAV, MP3, FLAC, OGG = "audio/wav", "audio/mpeg", "audio/flac", "audio/ogg"
PDF, TEXT, ZIP = "application/pdf", "text/plain", "application/zip"

SUPPORTED: frozenset[str] = frozenset({JPEG, PNG, WEBP, GIF, TIFF, WAV, MP3, FLAC, OGG, PDF, TEXT})
IMAGES: frozenset[str] = frozenset({JPEG, PNG, WEBP, GIF, TIFF})
GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})

ALIASES = {
    "image/jpg": JPEG, "image/pjpeg": JPEG, "image/x-png": PNG, "image/tif": TIFF, "image/x-tiff": TIFF,
    "audio/x-wav": WAV, "audio/wave": WAV, "audio/vnd.wave": WAV, "audio/x-pn-wav": WAV,
    "audio/mp3": MP3, "audio/x-mp3": MP3, "audio/mpeg3": MP3, "audio/x-mpeg": MP3,
    "audio/x-flac": FLAC, "application/ogg": OGG, "audio/vorbis": OGG, "audio/opus": OGG, "audio/x-ogg": OGG,
    "application/x-pdf": PDF, "application/x-zip-compressed": ZIP, "application/x-zip": ZIP,
}

EXTENSIONS = {
    ".jpg": JPEG, ".jpeg": JPEG, ".jpe": JPEG, ".png": PNG, ".webp": WEBP, ".gif": GIF, ".tif": TIFF,
    ".tiff": TIFF, ".wav": WAV, ".wave": WAV, ".mp3": MP3, ".flac": FLAC, ".ogg": OGG, ".oga": OGG,
    ".opus": OGG, ".pdf": PDF, ".txt": TEXT, ".text": TEXT, ".zip": ZIP,
}
TYPE_EXTENSION = {JPEG: ".jpg", PNG: ".png", WEBP: ".webp", GIF: ".gif", TIFF: ".tif", WAV: ".wav",
                  MP3: ".mp3", FLAC: ".flac", OGG: ".ogg", PDF: ".pdf", TEXT: ".txt", ZIP: ".zip"}

# MPEG audio frame header: 11 sync bits, then version (not the reserved 01), layer (not 00), and a
# bitrate index that is neither 0000 (free) nor 1111 (bad) — cheap checks that keep random bytes out.
_MPEG_VERSIONS_OK = {0b00, 0b10, 0b11}


@dataclass(frozen=True)
class Sniffed:
    content_type: str | None  # None: nothing we recognise

    @property
    def is_image(self) -> bool:
        return self.content_type in IMAGES


def normalise_type(declared: str | None) -> str:
    """`Image/JPEG; charset=x` → `image/jpeg`, aliases folded onto their canonical name."""
    if not declared:
        return ""
    base = declared.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def sniff(head: bytes, *, complete: bool = False) -> Sniffed:
    """The type the first bytes show. `complete`: `head` is the whole file (a short file)."""
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed(JPEG)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed(PNG)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed(GIF)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(WEBP)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed(WAV)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed(TIFF)
    if head.startswith(b"fLaC"):
        return Sniffed(FLAC)
    if head.startswith(b"OggS"):
        return Sniffed(OGG)
    if head.startswith(b"%PDF-"):
        return Sniffed(PDF)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Sniffed(ZIP)
    if head.startswith(b"ID3") or _is_mpeg_frame(head):
        return Sniffed(MP3)
    if _looks_like_text(head, complete=complete):
        return Sniffed(TEXT)
    return Sniffed(None)


def _is_mpeg_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    return version in _MPEG_VERSIONS_OK and layer != 0 and bitrate not in (0, 0xF)


def _looks_like_text(head: bytes, *, complete: bool) -> bool:
    if not head:
        return False
    sample = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    if b"\x00" in sample:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        text = decoder.decode(sample, final=complete)  # a multi-byte char cut at the edge is fine mid-file
    except UnicodeDecodeError:
        return False
    controls = sum(1 for c in text if ord(c) < 0x20 and c not in "\t\n\r\f\v")
    return controls <= max(1, len(text) // 100)


def _is_textual(declared_type: str) -> bool:
    return declared_type.startswith("text/") or declared_type in ("application/json", "application/x-ndjson")


def extension_type(filename: str | None) -> str | None:
    if not filename:
        return None
    return EXTENSIONS.get(PurePosixPath(filename).suffix.lower())


def resolve_type(sniffed: Sniffed, declared: str | None, filename: str | None, *,
                 allowed: frozenset[str] = SUPPORTED) -> str:
    """The content type to store, or 415 naming what was declared and what the bytes are."""
    actual = sniffed.content_type
    declared_type = normalise_type(declared)
    if actual is None or actual not in allowed:
        what = actual or "unrecognised content"
        raise UnsupportedMediaType(
            f"content is {what}; supported media types are {', '.join(sorted(allowed))}",
            declared=declared_type or None, detected=actual)
    if declared_type and declared_type not in GENERIC and declared_type != actual \
            and not (actual == TEXT and _is_textual(declared_type)):
        raise UnsupportedMediaType(
            f"declared content type {declared_type} does not match the content, which is {actual}",
            declared=declared_type, detected=actual)
    by_extension = extension_type(filename)
    if by_extension is not None and by_extension != actual:
        raise UnsupportedMediaType(
            f"file name extension says {by_extension} but the content is {actual}",
            declared=by_extension, detected=actual)
    return actual
