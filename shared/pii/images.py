"""Lossless removal of image metadata (EXIF incl. GPS, XMP, IPTC, comments, text chunks).

Only container-level edits: compressed image data is copied byte for byte, so nothing is re-encoded.
JPEG keeps JFIF (APP0), ICC profiles (APP2) and Adobe (APP14, colour transform); PNG drops
tEXt/zTXt/iTXt/eXIf/tIME; WebP drops EXIF/XMP chunks and clears their VP8X flags.
"""

from __future__ import annotations

import struct
import zlib

from shared.errors import UnsupportedMediaType, Unprocessable

JPEG_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
PNG_TYPES = frozenset({"image/png", "image/apng"})
WEBP_TYPES = frozenset({"image/webp"})
SUPPORTED_TYPES = JPEG_TYPES | PNG_TYPES | WEBP_TYPES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DROP = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})
WEBP_DROP = frozenset({b"EXIF", b"XMP "})


class ImageMetadataError(Unprocessable):
    type = "invalid-image"
    title = "Image could not be parsed"


def sniff_image_type(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def strip_image_metadata(data: bytes, content_type: str) -> bytes:
    """Return the image without metadata. The declared type must match the bytes."""
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared not in SUPPORTED_TYPES:
        raise UnsupportedMediaType(f"metadata removal supports JPEG, PNG and WebP, not {declared or 'unknown'}")
    actual = sniff_image_type(data)
    family = {"image/jpeg": JPEG_TYPES, "image/png": PNG_TYPES, "image/webp": WEBP_TYPES}.get(actual or "")
    if family is None or declared not in family:
        raise UnsupportedMediaType(f"content is not {declared} (detected: {actual or 'unknown'})")
    if declared in JPEG_TYPES:
        return _strip_jpeg(data)
    if declared in PNG_TYPES:
        return _strip_png(data)
    return _strip_webp(data)


def _keep_jpeg_app(marker: int, payload: bytes) -> bool:
    if marker == 0xE0:
        return payload.startswith(b"JFIF\x00")  # JFXX thumbnails are dropped
    if marker == 0xE2:
        return payload.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:
        return payload.startswith(b"Adobe")
    return False


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ImageMetadataError("JPEG marker expected")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise ImageMetadataError("truncated JPEG")
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            out += bytes((0xFF, marker))
            continue
        if i + 2 > n:
            raise ImageMetadataError("truncated JPEG segment")
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2 or i + length > n:
            raise ImageMetadataError("JPEG segment length out of range")
        payload = data[i + 2:i + length]
        segment_end = i + length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            if _keep_jpeg_app(marker, payload):
                out += bytes((0xFF, marker)) + data[i:segment_end]
            i = segment_end
            continue
        out += bytes((0xFF, marker)) + data[i:segment_end]
        i = segment_end
        if marker == 0xDA:  # start of scan: copy entropy-coded data up to the next real marker
            j = i
            while True:
                j = data.find(b"\xff", j)
                if j < 0 or j + 1 >= n:
                    raise ImageMetadataError("truncated JPEG scan")
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    j += 1 if nxt == 0xFF else 2
                    continue
                break
            out += data[i:j]
            i = j
    raise ImageMetadataError("JPEG without end-of-image marker")


def _strip_png(data: bytes) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    i, n = 8, len(data)
    while i < n:
        if i + 12 > n:
            raise ImageMetadataError("truncated PNG chunk")
        length, ctype = struct.unpack(">I4s", data[i:i + 8])
        end = i + 12 + length
        if end > n:
            raise ImageMetadataError("PNG chunk length out of range")
        crc = struct.unpack(">I", data[end - 4:end])[0]
        if zlib.crc32(data[i + 4:end - 4]) != crc:
            raise ImageMetadataError(f"bad CRC in PNG chunk {ctype.decode('latin-1')!r}")
        if ctype not in PNG_DROP:
            out += data[i:end]
        i = end
        if ctype == b"IEND":
            return bytes(out)
    raise ImageMetadataError("PNG without IEND chunk")


def _strip_webp(data: bytes) -> bytes:
    (riff_size,) = struct.unpack("<I", data[4:8])
    n = min(len(data), 8 + riff_size)
    chunks: list[bytes] = []
    i = 12
    while i + 8 <= n:
        fourcc = data[i:i + 4]
        (size,) = struct.unpack("<I", data[i + 4:i + 8])
        end = i + 8 + size + (size & 1)
        if i + 8 + size > n:
            raise ImageMetadataError("WebP chunk length out of range")
        if fourcc not in WEBP_DROP:
            chunk = bytearray(data[i:min(end, n)])
            if fourcc == b"VP8X" and size >= 1:
                chunk[8] &= ~(0x08 | 0x04) & 0xFF  # EXIF and XMP flags
            if len(chunk) & 1:
                chunk += b"\x00"
            chunks.append(bytes(chunk))
        i = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
