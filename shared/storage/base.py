"""The blob-store contract every backend (local directory, S3/MinIO, the encrypting wrapper) implements.

Ranges use Python slice semantics on byte offsets: `open_range(key, start, end)` yields the bytes
`data[start:end]` — `end` is EXCLUSIVE, `None` means "to the end", an `end` past the object is clipped and
a `start` at or past the end yields nothing. (HTTP `Range: bytes=a-b` is inclusive: pass `end=b + 1`.)
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, runtime_checkable

from shared.storage.errors import InvalidObjectKey

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_KEY_BYTES = 1024  # S3's limit; also keeps local paths well under PATH_MAX


@runtime_checkable
class BlobStore(Protocol):
    async def put(self, key: str, chunks: AsyncIterable[bytes], *,
                  content_type: str = DEFAULT_CONTENT_TYPE) -> int:
        """Store the streamed bytes under `key` (replacing any previous object); return bytes written.

        The stream is consumed incrementally and never held whole in memory. A failed put leaves the
        previous object (if any) untouched and no partial object visible."""
        ...

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream `data[start:end]` (end exclusive). Raises `ObjectNotFound` on first iteration."""
        ...

    async def size(self, key: str) -> int: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (idempotent, like S3)."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Keys starting with `prefix` (a plain string prefix, not a directory), in ascending order."""
        ...

    async def ping(self) -> None:
        """Readiness: return if the backend is usable, else raise `StorageUnavailable` saying why."""
        ...

    async def aclose(self) -> None: ...


def validate_key(key: object) -> str:
    """Return `key` if it is a safe relative object key, else raise `InvalidObjectKey`.

    Rejected: non-strings, empty keys, absolute keys, backslashes, NUL and other control characters,
    empty / `.` / `..` segments (so `a//b`, `a/./b`, `../x`, trailing `/`), and keys over 1024 UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise InvalidObjectKey(key, "must be a string")
    if not key:
        raise InvalidObjectKey(key, "must not be empty")
    _check_characters(key)
    if key.startswith("/"):
        raise InvalidObjectKey(key, "must be relative (no leading '/')")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(key, f"longer than {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidObjectKey(key, "empty path segment")
        if segment in (".", ".."):
            raise InvalidObjectKey(key, f"'{segment}' path segment")
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix may be empty or end mid-segment or with '/', but must not traverse."""
    if not isinstance(prefix, str):
        raise InvalidObjectKey(prefix, "prefix must be a string")
    if prefix == "":
        return prefix
    _check_characters(prefix)
    if prefix.startswith("/"):
        raise InvalidObjectKey(prefix, "must be relative (no leading '/')")
    segments = prefix.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment in (".", "..") or (segment == "" and not last):
            raise InvalidObjectKey(prefix, f"{segment or 'empty'!r} path segment in prefix")
    return prefix


def _check_characters(key: str) -> None:
    if "\\" in key:
        raise InvalidObjectKey(key, "backslashes are not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidObjectKey(key, "NUL and control characters are not allowed")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidObjectKey(key, "not valid UTF-8 (lone surrogate)") from None


def clamp_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Resolve slice-style [start, end) against an object of `size` bytes; may return an empty range."""
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"range start must be a non-negative integer, got {start!r}")
    if end is not None and (not isinstance(end, int) or end < 0):
        raise ValueError(f"range end must be a non-negative integer or None, got {end!r}")
    stop = size if end is None else min(end, size)
    start = min(start, size)
    return start, max(start, stop)


async def read_all(chunks: AsyncIterable[bytes]) -> bytes:
    """Collect a stream — for tests and small objects only."""
    out = bytearray()
    async for chunk in chunks:
        out += chunk
    return bytes(out)


async def iter_bytes(data: bytes, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Turn in-memory bytes into a chunk stream (tests, small objects)."""
    view = memoryview(data)
    for i in range(0, len(data), chunk_size):
        yield bytes(view[i:i + chunk_size])
