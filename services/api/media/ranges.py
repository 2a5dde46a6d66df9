"""HTTP Range requests (RFC 9110 §14) for one byte range.

Only a single `bytes=` range is served as 206. A syntactically invalid Range header or one with several
ranges is ignored (the RFC allows it) and the whole representation is sent: no multipart/byteranges, and
no amplification by a thousand tiny overlapping ranges.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    start: int  # inclusive
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"no part of the requested range lies within the {size} bytes of this object")
        self.size = size


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to serve, None to serve everything, `RangeNotSatisfiable` for 416."""
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 1 or not parts[0]:
        return None
    first, dash, last = parts[0].partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not _digits(first) and not _digits(last):
        return None
    if not first:  # suffix: the last N bytes
        if not _digits(last):
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    if not _digits(first) or (last and not _digits(last)):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid per the RFC: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(end, size - 1))


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


def if_range_allows(if_range: str | None, etag: str) -> bool:
    """`If-Range` with a strong ETag: serve the range only if the representation is unchanged."""
    if not if_range:
        return True
    return if_range.strip() == etag
