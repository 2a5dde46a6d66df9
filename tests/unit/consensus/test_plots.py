"""Rendered confusion-matrix and agreement-over-time images: valid PNG / SVG, no pyplot state."""

from __future__ import annotations

import io
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from services.consensus.reports.plots import (
    MEDIA_TYPES,
    InvalidPlotData,
    agreement_over_time_plot,
    confusion_matrix_plot,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"
CONFUSION = [[50, 3, 2], [4, 40, 6], [1, 2, 30]]
CLASSES = ["cat", "dog", "bird"]
STARTS = [datetime(2024, 1, 1) + timedelta(weeks=i) for i in range(8)]
SERIES = {"alpha": [0.5, 0.6, float("nan"), 0.7, 0.72, 0.71, 0.65, 0.8],
          "fleiss": [0.48, 0.58, 0.6, 0.69, 0.7, 0.7, 0.6, 0.79]}


def assert_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.width > 200 and image.height > 200
    # Not a blank canvas: a heatmap / chart has many distinct colours.
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20
    return image


def assert_svg(data: bytes) -> ET.Element:
    root = ET.fromstring(data)
    assert root.tag == f"{SVG_NS}svg"
    assert root.findall(f".//{SVG_NS}path")
    return root


def test_confusion_matrix_png_and_svg() -> None:
    assert_png(confusion_matrix_plot(CONFUSION, CLASSES))
    svg = confusion_matrix_plot(CONFUSION, CLASSES, fmt="svg", normalize=False, title="Annotator u1")
    assert_svg(svg)
    assert b"Annotator u1" in svg or b"Annotator" in svg  # title is rendered as text or glyph ids
    assert MEDIA_TYPES["svg"] == "image/svg+xml"


def test_agreement_over_time_png_and_svg() -> None:
    assert_png(agreement_over_time_plot(STARTS, SERIES, counts=[10, 20, 3, 40, 50, 60, 40, 30]))
    assert_svg(agreement_over_time_plot(STARTS, {"alpha": SERIES["alpha"]}, fmt="svg"))
    single = agreement_over_time_plot(STARTS[:1], {"alpha": [0.4]}, counts=[5])
    assert_png(single)
    assert_png(agreement_over_time_plot(np.array(STARTS, dtype="datetime64[s]"), SERIES))


def test_many_classes_and_empty_rows() -> None:
    k = 25  # above CELL_TEXT_MAX_CLASSES: colour only
    matrix = np.random.default_rng(0).integers(0, 10, (k, k))
    matrix[3] = 0  # a class nobody's truth had: row stays 0 instead of NaN
    assert_png(confusion_matrix_plot(matrix, [f"class {i}" for i in range(k)]))


def test_invalid_input() -> None:
    with pytest.raises(InvalidPlotData):
        confusion_matrix_plot(CONFUSION, ["a", "b"])
    with pytest.raises(InvalidPlotData):
        confusion_matrix_plot(CONFUSION, CLASSES, fmt="gif")
    with pytest.raises(InvalidPlotData):
        agreement_over_time_plot(STARTS, {"alpha": [0.1]})
    with pytest.raises(InvalidPlotData):
        agreement_over_time_plot(STARTS, {})


def test_concurrent_rendering_without_pyplot() -> None:
    def render(i: int) -> bytes:
        if i % 2:
            return confusion_matrix_plot(np.array(CONFUSION) + i, CLASSES)
        return agreement_over_time_plot(STARTS, SERIES)

    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(render, range(4)))
    for data in images:
        assert_png(data)
    assert "matplotlib.pyplot" not in sys.modules or not _pyplot_has_figures()


def _pyplot_has_figures() -> bool:
    import matplotlib.pyplot as plt  # only inspected if something else imported it

    return bool(plt.get_fignums())
