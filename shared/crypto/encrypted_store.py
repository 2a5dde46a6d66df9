"""`EncryptedBlobStore`: the `BlobStore` contract on plaintext, ciphertext in the wrapped store.

Each put draws a fresh data key (scoped for later shredding), streams the envelope format into the inner
store, and returns the plaintext size. Reads decrypt on the fly; a range fetches only the ciphertext
segments that cover it. Deleting or overwriting an object destroys its old data key.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from shared.crypto.datakeys import DataKeyStore
from shared.crypto.envelope import (
    DEFAULT_SEGMENT_SIZE,
    MAX_HEADER_BYTES,
    EnvelopeHeader,
    SegmentCipher,
    decrypt_span,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
    segment_span,
)
from shared.crypto.errors import DecryptionError
from shared.storage.base import DEFAULT_CONTENT_TYPE, BlobStore, clamp_range, read_all, validate_key
from shared.storage.errors import ObjectNotFound

CIPHERTEXT_CONTENT_TYPE = "application/octet-stream"


def object_scope(key: str) -> str:
    return f"object:{key}"


class EncryptedBlobStore:
    def __init__(self, inner: BlobStore, keys: DataKeyStore, *, segment_size: int = DEFAULT_SEGMENT_SIZE,
                 scope_for: Callable[[str], str] = object_scope) -> None:
        self.inner = inner
        self.keys = keys
        self.segment_size = segment_size
        self._scope_for = scope_for

    def __repr__(self) -> str:
        return f"EncryptedBlobStore(inner={self.inner!r})"

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str = DEFAULT_CONTENT_TYPE,
                  scope: str | None = None) -> int:
        """Encrypt and store. `scope` (default `scope_for(key)`) groups data keys for `destroy_scope`,
        e.g. "task:<id>", "dataset:<id>", "subject:<pseudonym>". The plaintext content type is the
        caller's to record; the stored object is opaque ciphertext."""
        validate_key(key)
        previous = await self._key_id_or_none(key)
        key_id, dek = await self.keys.create(scope or self._scope_for(key))
        counter = _Counter(chunks)
        try:
            await self.inner.put(key, encrypt_stream(counter, key_id=key_id, data_key=dek,
                                                     segment_size=self.segment_size),
                                 content_type=CIPHERTEXT_CONTENT_TYPE)
        except BaseException:
            await self.keys.destroy(key_id)
            raise
        if previous is not None and previous != key_id:
            await self.keys.destroy(previous)  # the replaced ciphertext (and any backup of it) is now noise
        return counter.total

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Plaintext `data[start:end]` (end exclusive). A whole-object read is one streaming GET; a range
        reads the header, then only the covering segments."""
        validate_key(key)
        clamp_range(start, end, 0)
        if start == 0 and end is None:
            async for piece in decrypt_stream(self.inner.open_range(key), self.keys.get):
                yield piece
            return
        header, stored = await self._header_and_size(key)
        total = plaintext_size(stored, header)
        first, stop = clamp_range(start, end, total)
        if first == stop:
            return
        span = segment_span(header, total, first, stop)
        cipher = SegmentCipher(header, await self.keys.get(header.key_id))
        chunks = self.inner.open_range(key, span.ciphertext_start, span.ciphertext_end)
        async for piece in decrypt_span(chunks, cipher, span):
            yield piece

    async def size(self, key: str) -> int:
        """Plaintext size, derived from the stored size and header (no decryption, no key access)."""
        header, stored = await self._header_and_size(key)
        return plaintext_size(stored, header)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        """Shred the object's data key, then delete the ciphertext."""
        key_id = await self._key_id_or_none(key)
        if key_id is not None:
            await self.keys.destroy(key_id)
        await self.inner.delete(key)

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        return self.inner.list(prefix)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def data_key_id(self, key: str) -> str:
        """The id of the data key protecting `key` (record it to shred by id later)."""
        header, _ = await self._header_and_size(key)
        return header.key_id

    async def _header_and_size(self, key: str) -> tuple[EnvelopeHeader, int]:
        stored = await self.inner.size(key)
        head = await read_all(self.inner.open_range(key, 0, MAX_HEADER_BYTES))
        return EnvelopeHeader.parse(head), stored

    async def _key_id_or_none(self, key: str) -> str | None:
        try:
            head = await read_all(self.inner.open_range(key, 0, MAX_HEADER_BYTES))
            return EnvelopeHeader.parse(head).key_id
        except (ObjectNotFound, DecryptionError):
            return None


class _Counter:
    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.total = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.total += len(chunk)
            yield chunk
