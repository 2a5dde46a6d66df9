"""Image metadata removal: GPS/EXIF gone, pixels unchanged, bad input refused."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from shared.errors import UnsupportedMediaType
from shared.pii.images import ImageMetadataError, strip_image_metadata

GPS_IFD = 0x8825


def _image() -> Image.Image:
    img = Image.new("RGB", (32, 24))
    for x in range(32):
        for y in range(24):
            img.putpixel((x, y), (x * 8, y * 10, 128))
    return img


def _jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0131] = "quorum-test"  # Software
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)})
    buf = io.BytesIO()
    _image().save(buf, "JPEG", exif=exif.tobytes(), comment=b"taken at home", quality=90)
    return buf.getvalue()


def test_jpeg_gps_and_exif_removed_pixels_kept() -> None:
    data = _jpeg_with_gps()
    before = Image.open(io.BytesIO(data))
    assert before.getexif().get_ifd(GPS_IFD)  # the fixture really carries GPS
    clean = strip_image_metadata(data, "image/jpeg")
    after = Image.open(io.BytesIO(clean))
    after.load()
    assert not after.getexif().get_ifd(GPS_IFD)
    assert len(after.getexif()) == 0
    assert "comment" not in after.info and "exif" not in after.info
    assert b"Exif\x00\x00" not in clean and b"SpyCam" not in clean and b"taken at home" not in clean
    assert after.size == before.size
    assert after.tobytes() == Image.open(io.BytesIO(data)).tobytes()  # lossless


def test_png_text_chunks_removed() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Maria Garcia")
    info.add_text("Comment", "GPS 51.5,-0.12", zip=True)
    info.add_itxt("Description", "home address", lang="en")
    buf = io.BytesIO()
    img = _image()
    img.save(buf, "PNG", pnginfo=info, exif=Image.Exif().tobytes())
    data = buf.getvalue()
    assert b"tEXt" in data and b"zTXt" in data and b"iTXt" in data
    clean = strip_image_metadata(data, "image/png")
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
        assert chunk not in clean
    assert b"Maria Garcia" not in clean
    after = Image.open(io.BytesIO(clean))
    assert after.text == {}
    assert after.convert("RGB").tobytes() == img.tobytes()


def test_webp_exif_removed() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 12.5)})
    buf = io.BytesIO()
    _image().save(buf, "WEBP", exif=exif.tobytes(), lossless=True)
    data = buf.getvalue()
    assert b"EXIF" in data
    clean = strip_image_metadata(data, "image/webp")
    assert b"EXIF" not in clean and b"SpyCam" not in clean
    after = Image.open(io.BytesIO(clean))
    after.load()
    assert not after.getexif().get_ifd(GPS_IFD)
    assert after.convert("RGB").tobytes() == _image().tobytes()


def test_type_mismatch_and_unsupported_types_refused() -> None:
    png = io.BytesIO()
    _image().save(png, "PNG")
    with pytest.raises(UnsupportedMediaType):
        strip_image_metadata(png.getvalue(), "image/jpeg")
    with pytest.raises(UnsupportedMediaType):
        strip_image_metadata(b"GIF89a....", "image/gif")


def test_corrupt_images_refused() -> None:
    data = _jpeg_with_gps()
    with pytest.raises(ImageMetadataError):
        strip_image_metadata(data[: len(data) // 3], "image/jpeg")
    png = io.BytesIO()
    _image().save(png, "PNG")
    raw = bytearray(png.getvalue())
    raw[40] ^= 0xFF  # inside IHDR/IDAT: CRC no longer matches
    with pytest.raises(ImageMetadataError):
        strip_image_metadata(bytes(raw), "image/png")
    ihdr = struct.pack(">I4s", 13, b"IHDR") + b"\x00" * 13
    bad_len = b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", zlib.crc32(ihdr[4:])) + b"\xff\xff\xff\xf0IDAT"
    with pytest.raises(ImageMetadataError):
        strip_image_metadata(bad_len, "image/png")
