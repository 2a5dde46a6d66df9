"""Segmented AES-256-GCM envelope format for blobs: streamable both ways, random access by segment.

Layout::

    header   = magic "QENV" | format u8 (=1) | segment_size u32 | nonce_prefix 8B | key_id_len u8 | key_id
    segment i = AES-256-GCM(segment_key, nonce = nonce_prefix ‖ u32(i),
                            aad = SHA-256(header) ‖ u32(i) ‖ u8(final)) — ciphertext ‖ 16-byte tag

Every segment holds `segment_size` plaintext bytes except the final one, which holds 1..segment_size
(or 0 when the whole plaintext is empty: there is always exactly one final segment). So the plaintext
size follows from the ciphertext size and the header alone, and a plaintext range maps to the exact
ciphertext segments that cover it.

What fails with `DecryptionError`: any header change (its hash is in every segment's AAD), a flipped
byte in a segment or tag, segments reordered (index in nonce and AAD), a segment copied from another
object (other header hash and key), dropping trailing segments (the new last one is not marked final)
and cutting mid-segment (impossible size / failed tag).

`segment_key = HKDF-SHA256(dek, salt=nonce_prefix, info="quorum-envelope/1")`, so even a reused data key
never repeats a (key, nonce) pair.

Streaming decryption releases each segment's plaintext once its tag verified; a stream cut short fails at
its end, so consumers must treat the stream as failed (abort the HTTP response) when iteration raises.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.crypto.errors import DecryptionError

MAGIC = b"QENV"
FORMAT_VERSION = 1
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 8
DEFAULT_SEGMENT_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 8 * 1024 * 1024
MAX_SEGMENTS = 2**32
_FIXED = struct.Struct(">4sBI8sB")  # magic, format, segment size, nonce prefix, key id length
HEADER_FIXED_BYTES = _FIXED.size
MAX_KEY_ID_BYTES = 255
MAX_HEADER_BYTES = HEADER_FIXED_BYTES + MAX_KEY_ID_BYTES
_KDF_INFO = b"quorum-envelope/1"

KeyLookup = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    key_id: str
    segment_size: int = DEFAULT_SEGMENT_SIZE
    nonce_prefix: bytes = field(default_factory=lambda: secrets.token_bytes(NONCE_PREFIX_BYTES))

    def __post_init__(self) -> None:
        _check_segment_size(self.segment_size, ValueError)
        key_id = self.key_id
        if not (isinstance(key_id, str) and 1 <= len(key_id) <= MAX_KEY_ID_BYTES and key_id.isascii()
                and key_id.isprintable()):
            raise ValueError("data key id must be 1..255 printable ASCII characters")
        if len(self.nonce_prefix) != NONCE_PREFIX_BYTES:
            raise ValueError(f"nonce prefix must be {NONCE_PREFIX_BYTES} bytes")

    def encode(self) -> bytes:
        raw_id = self.key_id.encode("ascii")
        return _FIXED.pack(MAGIC, FORMAT_VERSION, self.segment_size, self.nonce_prefix, len(raw_id)) + raw_id

    @property
    def length(self) -> int:
        return HEADER_FIXED_BYTES + len(self.key_id)

    @property
    def segment_ciphertext_size(self) -> int:
        return self.segment_size + TAG_BYTES

    @classmethod
    def parse(cls, data: bytes) -> EnvelopeHeader:
        """Parse a header from the start of `data` (which may continue with segments)."""
        if len(data) < HEADER_FIXED_BYTES:
            raise DecryptionError("encrypted object is truncated inside its header")
        magic, version, segment_size, prefix, id_len = _FIXED.unpack_from(data)
        if magic != MAGIC:
            raise DecryptionError("not an encrypted Quorum object (bad magic)")
        if version != FORMAT_VERSION:
            raise DecryptionError(f"unsupported envelope format version {version}")
        _check_segment_size(segment_size, DecryptionError)
        if id_len == 0 or len(data) < HEADER_FIXED_BYTES + id_len:
            raise DecryptionError("encrypted object is truncated inside its header")
        try:
            key_id = bytes(data[HEADER_FIXED_BYTES:HEADER_FIXED_BYTES + id_len]).decode("ascii")
            return cls(key_id, segment_size, bytes(prefix))
        except (UnicodeDecodeError, ValueError):
            raise DecryptionError("encrypted object header has an invalid data key id") from None


def _check_segment_size(size: int, error: type[Exception]) -> None:
    if not MIN_SEGMENT_SIZE <= size <= MAX_SEGMENT_SIZE:
        raise error(f"segment size {size} outside the allowed {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}")


class SegmentCipher:
    """Encrypts/decrypts the segments of one object. Holds the derived key: keep it short-lived."""

    __slots__ = ("header", "_aead", "_digest", "_prefix")

    def __init__(self, header: EnvelopeHeader, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("data keys are 32 bytes (AES-256)")
        self.header = header
        segment_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=header.nonce_prefix,
                           info=_KDF_INFO).derive(data_key)
        self._aead = AESGCM(segment_key)
        self._digest = hashlib.sha256(header.encode()).digest()
        self._prefix = header.nonce_prefix

    def __repr__(self) -> str:
        return f"SegmentCipher(key_id={self.header.key_id!r})"

    def _nonce_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        if not 0 <= index < MAX_SEGMENTS:
            raise ValueError("too many segments for one object")
        counter = struct.pack(">I", index)
        return self._prefix + counter, self._digest + counter + (b"\x01" if final else b"\x00")

    def encrypt_segment(self, index: int, plaintext: bytes, final: bool) -> bytes:
        nonce, aad = self._nonce_aad(index, final)
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt_segment(self, index: int, ciphertext: bytes, final: bool) -> bytes:
        nonce, aad = self._nonce_aad(index, final)
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptionError(
                f"segment {index} failed authentication (tampered, truncated, reordered or wrong key)"
            ) from None


# -- sizes and offsets -----------------------------------------------------------------------------

def segment_count(plaintext_size: int, segment_size: int) -> int:
    return max(1, -(-plaintext_size // segment_size))


def ciphertext_size(plaintext_size: int, header: EnvelopeHeader) -> int:
    return header.length + plaintext_size + TAG_BYTES * segment_count(plaintext_size, header.segment_size)


def plaintext_size(total_ciphertext_size: int, header: EnvelopeHeader) -> int:
    """Plaintext length implied by the stored object's size; `DecryptionError` if no valid object has it."""
    body = total_ciphertext_size - header.length
    full = header.segment_ciphertext_size
    if body < TAG_BYTES:
        raise DecryptionError("encrypted object is truncated (no final segment)")
    segments = -(-body // full)
    last = body - (segments - 1) * full
    if last < TAG_BYTES or (last == TAG_BYTES and segments > 1):
        raise DecryptionError("encrypted object has an impossible size (truncated mid-segment?)")
    return body - TAG_BYTES * segments


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """The ciphertext bytes [ciphertext_start, ciphertext_end) hold segments first..last (inclusive),
    which cover plaintext [start, end); `skip` bytes of the first segment's plaintext precede `start`."""

    first: int
    last: int
    final_index: int
    ciphertext_start: int
    ciphertext_end: int
    skip: int
    length: int


def segment_span(header: EnvelopeHeader, total_plaintext: int, start: int, end: int) -> SegmentSpan:
    if not 0 <= start < end <= total_plaintext:
        raise ValueError(f"range [{start}, {end}) is empty or outside 0..{total_plaintext}")
    size, full = header.segment_size, header.segment_ciphertext_size
    first, last = start // size, (end - 1) // size
    final_index = segment_count(total_plaintext, size) - 1
    ct_start = header.length + first * full
    ct_end = header.length + min(last * full + full, total_plaintext + TAG_BYTES * (final_index + 1))
    return SegmentSpan(first, last, final_index, ct_start, ct_end, start - first * size, end - start)


# -- streaming -------------------------------------------------------------------------------------

async def encrypt_stream(chunks: AsyncIterable[bytes], *, key_id: str, data_key: bytes,
                         segment_size: int = DEFAULT_SEGMENT_SIZE) -> AsyncIterator[bytes]:
    """Header, then one ciphertext segment per `segment_size` of plaintext. Holds back one segment to
    know which is final, so memory stays ~2 segments + one input chunk."""
    header = EnvelopeHeader(key_id, segment_size)
    cipher = SegmentCipher(header, data_key)
    yield header.encode()
    final = bytearray()
    index = 0
    async for segment in _segments(chunks, segment_size, final):
        yield cipher.encrypt_segment(index, segment, final=False)
        index += 1
    yield cipher.encrypt_segment(index, bytes(final), final=True)


async def decrypt_stream(chunks: AsyncIterable[bytes], key_for: KeyLookup) -> AsyncIterator[bytes]:
    """Decrypt a whole object (header first). `key_for(key_id)` returns the data key (e.g. a
    `DataKeyStore.get`, which raises `KeyDestroyed` for shredded keys)."""
    iterator = chunks.__aiter__()
    buf = bytearray()
    while len(buf) < HEADER_FIXED_BYTES or len(buf) < HEADER_FIXED_BYTES + buf[HEADER_FIXED_BYTES - 1]:
        try:
            buf += await iterator.__anext__()
        except StopAsyncIteration:
            EnvelopeHeader.parse(bytes(buf))  # names what is wrong: bad magic, version, ...
            raise DecryptionError("encrypted object is truncated inside its header") from None
    header = EnvelopeHeader.parse(bytes(buf[:MAX_HEADER_BYTES]))
    del buf[:header.length]
    cipher = SegmentCipher(header, await key_for(header.key_id))
    index = 0
    final = bytearray()
    async for segment in _segments(_resume(iterator, bytes(buf)), header.segment_ciphertext_size, final):
        yield cipher.decrypt_segment(index, segment, final=False)
        index += 1
    if len(final) < TAG_BYTES or (len(final) == TAG_BYTES and index > 0):
        raise DecryptionError("encrypted object is truncated (final segment missing or cut)")
    yield cipher.decrypt_segment(index, bytes(final), final=True)


async def decrypt_span(chunks: AsyncIterable[bytes], cipher: SegmentCipher, span: SegmentSpan) -> AsyncIterator[bytes]:
    """Decrypt the ciphertext bytes described by `span` (as fetched from storage) and yield exactly the
    requested plaintext range."""
    full = cipher.header.segment_ciphertext_size
    expected_end = span.ciphertext_end - span.ciphertext_start
    buf = bytearray()
    index = span.first
    consumed = 0
    skip, remaining = span.skip, span.length
    async for chunk in chunks:
        buf += chunk
        while index <= span.last:
            final = index == span.final_index
            need = full if not final else expected_end - consumed
            if len(buf) < need:
                break
            plaintext = cipher.decrypt_segment(index, bytes(buf[:need]), final=final)
            del buf[:need]
            consumed += need
            index += 1
            piece = plaintext[skip:skip + remaining]
            skip = 0
            remaining -= len(piece)
            if piece:
                yield piece
    if index <= span.last or remaining:
        raise DecryptionError("encrypted object is shorter than its stored size claims (truncated)")


async def _segments(chunks: AsyncIterable[bytes], size: int, rest: bytearray
                    ) -> AsyncIterator[bytes | bytearray | memoryview]:
    """The stream in `size`-byte segments, each one yielded only once more bytes follow it; what is left at the
    end (the final segment, up to `size` bytes) is in `rest`. Segments are views of the chunks: only one that
    spans two chunks is copied (into `rest`), so a large stream is not copied and shifted through one buffer
    segment by segment. A yielded segment is valid until the next one is asked for."""
    async for chunk in chunks:
        view = memoryview(chunk)
        if rest:
            need = size - len(rest)
            if len(view) <= need:
                rest += view
                continue
            rest += view[:need]
            view = view[need:]
            yield rest
            rest.clear()
        at = 0
        while len(view) - at > size:
            yield view[at:at + size]
            at += size
        rest += view[at:]


async def _resume(iterator: AsyncIterator[bytes], first: bytes = b"") -> AsyncIterator[bytes]:
    yield first
    while True:
        try:
            yield await iterator.__anext__()
        except StopAsyncIteration:
            return


# -- in-memory helpers (small objects, tests) ------------------------------------------------------

def encrypt_bytes(plaintext: bytes, *, key_id: str, data_key: bytes,
                  segment_size: int = DEFAULT_SEGMENT_SIZE) -> bytes:
    header = EnvelopeHeader(key_id, segment_size)
    cipher = SegmentCipher(header, data_key)
    out = [header.encode()]
    count = segment_count(len(plaintext), segment_size)
    view = memoryview(plaintext)
    for i in range(count):
        out.append(cipher.encrypt_segment(i, bytes(view[i * segment_size:(i + 1) * segment_size]), i == count - 1))
    return b"".join(out)


def decrypt_bytes(ciphertext: bytes, data_key: bytes) -> bytes:
    header = EnvelopeHeader.parse(ciphertext)
    cipher = SegmentCipher(header, data_key)
    total = plaintext_size(len(ciphertext), header)
    full = header.segment_ciphertext_size
    count = segment_count(total, header.segment_size)
    body = memoryview(ciphertext)[header.length:]
    return b"".join(cipher.decrypt_segment(i, bytes(body[i * full:(i + 1) * full]), i == count - 1)
                    for i in range(count))
