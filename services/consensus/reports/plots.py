"""Confusion-matrix heatmap and agreement-over-time chart as PNG / SVG bytes.

Rendering uses `matplotlib.figure.Figure` with the Agg canvas directly: no pyplot, so no global figure
registry, no backend switch and nothing that leaks between requests; one Figure per call is safe to render
from several threads at once. Styling is passed explicitly instead of through rcParams (which are global).
PNG and SVG output carry no date or software metadata.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

ImageFormat = Literal["png", "svg"]
FORMATS: tuple[ImageFormat, ...] = ("png", "svg")
MEDIA_TYPES: dict[ImageFormat, str] = {"png": "image/png", "svg": "image/svg+xml"}

DPI = 110
CELL_TEXT_MAX_CLASSES = 20  # beyond this many classes the cell values are unreadable: colour only
HEATMAP_CMAP = "Blues"
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


class InvalidPlotData(ValueError):
    pass


def _render(fig: Figure, fmt: ImageFormat) -> bytes:
    if fmt not in FORMATS:
        raise InvalidPlotData(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    return buf.getvalue()


def confusion_matrix_plot(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[object],
    *,
    fmt: ImageFormat = "png",
    title: str = "Confusion matrix",
    normalize: bool = True,
    true_label: str = "True label",
    predicted_label: str = "Annotator's label",
) -> bytes:
    """Heatmap of a K x K confusion matrix (rows = true class). `normalize` shows each row as proportions."""
    m = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    if m.shape != (k, k):
        raise InvalidPlotData(f"matrix is {m.shape} but there are {k} classes")
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    # Layout in inches (constrained layout costs more than the drawing itself): square matrix, tick-label
    # margins sized from the longest class name, colourbar on the right.
    side = min(max(0.5 * k, 2.5), 11.0)
    char_in = 0.075
    longest = max((len(str(c)) for c in classes), default=1)
    rotate = k > 4
    left = 0.55 + char_in * longest
    bottom = 0.55 + (0.75 * char_in * longest if rotate else 0.2)
    top, right = 0.45, 1.1
    width, height = left + side + right, bottom + side + top
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    cax = fig.add_axes(((left + side + 0.15) / width, bottom / height, 0.18 / width, side / height))
    vmax = 1.0 if normalize else (float(m.max()) if m.size and m.max() > 0 else 1.0)
    image = ax.imshow(m, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="auto")
    fig.colorbar(image, cax=cax, label="share of row" if normalize else "count")
    names = [str(c) for c in classes]
    ax.set_xticks(range(k), labels=names, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel(predicted_label)
    ax.set_ylabel(true_label)
    ax.set_title(title)
    if k <= CELL_TEXT_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                value = m[i, j]
                text = f"{value:.2f}" if normalize else f"{value:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if value > 0.6 * vmax else "black")
    return _render(fig, fmt)


def agreement_over_time_plot(
    starts: Sequence[datetime | date | np.datetime64],
    series: Mapping[str, Sequence[float]],
    *,
    fmt: ImageFormat = "png",
    title: str = "Agreement over time",
    y_label: str = "agreement",
    counts: Sequence[int] | None = None,
) -> bytes:
    """Line chart of one or more agreement series (e.g. alpha, Fleiss' kappa) per day / week bucket.

    NaN values (buckets without enough data) leave gaps. `counts` (labels per bucket), if given, is drawn as
    bars on a secondary axis so a dip on a handful of labels reads as such.
    """
    x = np.asarray([np.datetime64(s, "s") for s in starts]).astype("datetime64[s]").astype(datetime)
    if not series:
        raise InvalidPlotData("no series to plot")
    for name, values in series.items():
        if len(values) != len(x):
            raise InvalidPlotData(f"series {name!r} has {len(values)} values for {len(x)} buckets")
    fig = Figure(figsize=(8.0, 4.0))
    fig.subplots_adjust(left=0.09, right=0.91 if counts is not None else 0.97, bottom=0.14, top=0.9)
    ax = fig.add_subplot()
    if counts is not None:
        if len(counts) != len(x):
            raise InvalidPlotData(f"counts has {len(counts)} values for {len(x)} buckets")
        bars = ax.twinx()
        width = _bar_width_days(x)
        bars.bar(x, counts, width=width, color="#cccccc", alpha=0.5, label="labels")
        bars.set_ylabel("labels")
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
    lo, hi = 0.0, 1.0
    for i, (name, values) in enumerate(series.items()):
        y = np.asarray(values, dtype=np.float64)
        finite = y[np.isfinite(y)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        ax.plot(x, y, marker="o", markersize=3, linewidth=1.5, label=name,
                color=SERIES_COLOURS[i % len(SERIES_COLOURS)])
    ax.set_ylim(lo - 0.05, hi + 0.05)
    ax.axhline(0.0, color="#888888", linewidth=0.8, linestyle=":")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower left")
    return _render(fig, fmt)


def _bar_width_days(x: np.ndarray) -> float:
    if len(x) < 2:
        return 0.8
    gaps = np.diff(np.asarray(x, dtype="datetime64[s]")).astype(np.float64) / 86_400.0
    gap = float(np.min(gaps[gaps > 0])) if (gaps > 0).any() else 1.0
    return 0.8 * gap if math.isfinite(gap) else 0.8
