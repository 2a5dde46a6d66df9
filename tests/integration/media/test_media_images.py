"""Image metadata (EXIF incl. GPS, text chunks, comments) is removed before anything is stored."""

from __future__ import annotations

import io

from PIL import ExifTags, Image, PngImagePlugin

from shared.storage import read_all


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.Base.Artist] = "Jane Roe"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 1.0)
    return exif


def _image() -> Image.Image:
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    img.paste((20, 200, 40), (10, 10, 30, 30))
    return img


async def test_jpeg_gps_exif_is_gone_after_upload(any_env) -> None:  # noqa: ANN001
    env = any_env
    out = io.BytesIO()
    _image().save(out, "JPEG", exif=_exif(), quality=95)
    original = out.getvalue()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the fixture has GPS

    created = await env.upload(original, "holiday.jpg", "image/jpeg")
    assert created.status_code == 201, created.text
    assert created.json()["metadata_removed"] == ["metadata"]
    served = (await env.client.get(created.json()["url"], headers=await env.manager())).content
    image = Image.open(io.BytesIO(served))
    exif = image.getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo) and ExifTags.Base.Artist not in exif
    assert b"Jane Roe" not in served and b"SpyCam" not in served
    assert image.size == (64, 48) and image.format == "JPEG"
    # compressed image data is untouched (lossless container edit): the pixels decode identically
    assert image.tobytes() == Image.open(io.BytesIO(original)).tobytes()
    assert created.json()["size_bytes"] == len(served) < len(original)


async def test_png_text_and_tiff_and_gif_metadata_removed(env) -> None:  # noqa: ANN001
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "52.5200 N, 13.4050 E")
    info.add_text("Author", "Jane Roe")
    png = io.BytesIO()
    _image().save(png, "PNG", pnginfo=info, exif=_exif())
    tiff = io.BytesIO()
    _image().save(tiff, "TIFF", exif=_exif())
    gif = io.BytesIO()
    _image().convert("P").save(gif, "GIF", comment=b"shot by Jane Roe at home")
    for name, data, ctype in [("a.png", png.getvalue(), "image/png"), ("b.tif", tiff.getvalue(), "image/tiff"),
                              ("c.gif", gif.getvalue(), "image/gif")]:
        assert b"Jane Roe" in data
        created = await env.upload(data, name, ctype)
        assert created.status_code == 201, (name, created.text)
        served = (await env.client.get(created.json()["url"], headers=await env.manager())).content
        assert b"Jane Roe" not in served and b"52.5200" not in served, name
        image = Image.open(io.BytesIO(served))
        assert image.size == (64, 48) and not image.getexif().get_ifd(ExifTags.IFD.GPSInfo), name
        assert ExifTags.Base.Artist not in image.getexif(), name


async def test_images_over_the_image_cap_are_413(env) -> None:  # noqa: ANN001
    noisy = Image.frombytes("RGB", (700, 700), bytes((i * 7919) % 251 for i in range(700 * 700 * 3)))
    out = io.BytesIO()
    noisy.save(out, "PNG", compress_level=0)
    assert env.settings.max_image_bytes < len(out.getvalue()) < env.settings.max_media_bytes
    response = await env.upload(out.getvalue(), "big.png", "image/png")
    assert response.status_code == 413, response.text


async def test_corrupt_image_is_422_and_nothing_stored(env) -> None:  # noqa: ANN001
    response = await env.upload(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"garbage" * 10, "x.png",
                                "image/png")
    assert response.status_code == 422, response.text
    raw = env.ctx.extras["raw_blob_store"]
    assert [await read_all(raw.open_range(k)) async for k in raw.list(f"media/{env.project_id}/")] == []
