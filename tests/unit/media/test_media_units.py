"""Pure pieces of the media pipeline: sniffing, ranges, signed links, names, archive limits, the spool."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from services.api.media.archives import (
    ArchiveLimits,
    BadArchive,
    DecompressionBomb,
    ExpansionBudget,
    inspect_archive,
)
from services.api.media.links import InvalidLink, sign_link, verify_link
from services.api.media.names import UnsafeFileName, check_member_path, display_name
from services.api.media.ranges import ByteRange, RangeNotSatisfiable, parse_range
from services.api.media.sniff import resolve_type, sniff
from services.api.media.spool import EncryptedSpool
from shared.crypto import KeyRing
from shared.errors import UnsupportedMediaType

SAMPLES = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40,
    "image/png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    "image/gif": b"GIF89a" + b"\x00" * 40,
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40,
    "image/tiff": b"II*\x00\x08\x00\x00\x00" + b"\x00" * 40,
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 40,
    "audio/flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 40,
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 40,
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 5,
    "text/plain": "Hello, wörld — plain text.\n".encode(),
}


@pytest.mark.parametrize("content_type", sorted(SAMPLES))
def test_sniff_recognises_each_supported_type(content_type: str) -> None:
    assert sniff(SAMPLES[content_type], complete=True).content_type == content_type


def test_sniff_mp3_frame_sync_without_id3() -> None:
    assert sniff(b"\xff\xfb\x90\x64" + b"\x00" * 40).content_type == "audio/mpeg"
    assert sniff(b"\xff\xfb\xf0\x64" + b"\x00" * 40).content_type is None  # bad bitrate index


def test_binary_noise_is_not_text() -> None:
    assert sniff(bytes(range(256)) * 4).content_type is None
    assert sniff(b"MZ\x90\x00\x03\x00\x00\x00").content_type is None  # a Windows executable


def test_text_cut_mid_character_is_still_text_unless_complete() -> None:
    head = ("a" * 10 + "é").encode()[:-1]
    assert sniff(head, complete=False).content_type == "text/plain"
    assert sniff(head, complete=True).content_type is None


def test_mismatch_names_both_types() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        resolve_type(sniff(SAMPLES["application/pdf"]), "image/png", "scan.png")
    assert "image/png" in caught.value.detail and "application/pdf" in caught.value.detail
    assert caught.value.extensions == {"declared": "image/png", "detected": "application/pdf"}


def test_extension_mismatch_and_aliases() -> None:
    assert resolve_type(sniff(SAMPLES["image/jpeg"]), "image/jpg", "photo.JPEG") == "image/jpeg"
    assert resolve_type(sniff(SAMPLES["text/plain"]), "text/csv; charset=utf-8", "rows.csv") == "text/plain"
    assert resolve_type(sniff(SAMPLES["audio/wav"]), "application/octet-stream", None) == "audio/wav"
    with pytest.raises(UnsupportedMediaType, match="extension says image/png"):
        resolve_type(sniff(SAMPLES["image/jpeg"]), None, "photo.png")
    with pytest.raises(UnsupportedMediaType, match="supported media types"):
        resolve_type(sniff(b"MZ\x90\x00" * 20), "image/png", "x.png")


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-9", 100, ByteRange(0, 9)),
    ("bytes=10-", 100, ByteRange(10, 99)),
    ("bytes=-5", 100, ByteRange(95, 99)),
    ("bytes=-500", 100, ByteRange(0, 99)),
    ("bytes=90-200", 100, ByteRange(90, 99)),
    ("Bytes = 5-5", 100, ByteRange(5, 5)),
    ("bytes=0-0,5-9", 100, None),  # several ranges: served whole
    ("items=0-5", 100, None),
    ("bytes=9-3", 100, None),  # invalid: ignored
    ("bytes=abc", 100, None),
    (None, 100, None),
])
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_signed_link_round_trip_expiry_and_tampering() -> None:
    ring = KeyRing.generate()
    params = sign_link(ring, "m-1", "user-1", 60)
    grant = verify_link(ring, "m-1", params)
    assert grant.issued_by == "user-1" and grant.media_id == "m-1"
    with pytest.raises(InvalidLink, match="expired"):
        verify_link(ring, "m-1", params, now=time.time() + 61)
    with pytest.raises(InvalidLink, match="does not match"):
        verify_link(ring, "m-2", params)  # another media
    for field, value in [("exp", str(int(params["exp"]) + 3600)), ("by", "user-2"),
                         ("sig", params["sig"][:-2] + ("AA" if params["sig"][-2:] != "AA" else "BB"))]:
        with pytest.raises(InvalidLink):
            verify_link(ring, "m-1", {**params, field: value})
    with pytest.raises(InvalidLink, match="retired"):
        verify_link(ring, "m-1", {**params, "kv": "7"})
    with pytest.raises(InvalidLink, match="malformed"):
        verify_link(ring, "m-1", {**params, "exp": "soon"})
    with pytest.raises(InvalidLink):
        verify_link(KeyRing.generate(), "m-1", params)  # another deployment's key


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "/abs/path.png", "C:\\win\\x.png",
                                  "..\\..\\x.png", "nul\x00.png", "ok/../x"])
def test_traversal_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeFileName):
        check_member_path(name)


def test_display_name_is_last_segment_and_safe() -> None:
    assert display_name("dir/sub/photo 1.jpg") == "photo 1.jpg"
    assert display_name("<b>alert(1)<b>;.txt") == "_b_alert(1)_b__.txt"
    assert display_name("x/<script>.txt") == "_script_.txt"
    assert display_name(None) == "file"
    long = "x" * 400 + ".png"
    assert len(display_name(long)) == 255 and display_name(long).endswith(".png")


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_archive_limits_refuse_bombs_before_inflating() -> None:
    bomb = _zip({"zeros.txt": b"\x00" * (10 * 1024 * 1024)})
    with pytest.raises(DecompressionBomb, match="compression ratio"):
        inspect_archive(io.BytesIO(bomb), ArchiveLimits(max_ratio=100))
    many = _zip({f"f{i}.txt": b"x" for i in range(20)}, zipfile.ZIP_STORED)
    with pytest.raises(DecompressionBomb, match="holds 20 files"):
        inspect_archive(io.BytesIO(many), ArchiveLimits(max_members=10))
    big = _zip({"a.txt": b"a" * 6000, "b.txt": b"b" * 6000}, zipfile.ZIP_STORED)
    with pytest.raises(DecompressionBomb, match="expands to more than"):
        inspect_archive(io.BytesIO(big), ArchiveLimits(max_total_bytes=10_000))
    with pytest.raises(UnsafeFileName):
        inspect_archive(io.BytesIO(_zip({"../evil.txt": b"x"})), ArchiveLimits())
    with pytest.raises(BadArchive):
        inspect_archive(io.BytesIO(b"PK\x03\x04 not really a zip"), ArchiveLimits())


def test_lying_sizes_are_caught_while_inflating() -> None:
    honest = _zip({"a.txt": b"hello world " * 1000})
    archive, members = inspect_archive(io.BytesIO(_understate_size(honest, 100)), ArchiveLimits())
    with pytest.raises((DecompressionBomb, BadArchive)):
        for _ in ExpansionBudget(ArchiveLimits()).read_member(archive, members[0]):
            pass


def _understate_size(data: bytes, fake: int) -> bytes:
    """Rewrite the uncompressed size in the central directory (and local header) to `fake`."""
    out = bytearray(data)
    cd = out.rfind(b"PK\x01\x02")
    struct.pack_into("<I", out, cd + 24, fake)
    struct.pack_into("<I", out, 22, fake)
    return bytes(out)


def test_spool_round_trips_and_keeps_plaintext_off_disk(tmp_path) -> None:  # noqa: ANN001
    spool = EncryptedSpool(str(tmp_path))
    payload = b"MARKER-plaintext-" * 10_000
    for i in range(0, len(payload), 7777):
        spool.append(payload[i:i + 7777])
    assert spool.size == len(payload)
    spool.seek(12345)
    assert spool.read(100) == payload[12345:12445]
    spool.seek(-17, io.SEEK_END)
    assert spool.read() == payload[-17:]
    raw = spool._file  # the bytes on disk
    raw.seek(0)
    assert b"MARKER" not in raw.read()
    spool.close()
    assert list(tmp_path.iterdir()) == []  # unlinked on creation
