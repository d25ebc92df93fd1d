"""Figures for ``asymsr report``: PSNR against cost, and a visual comparison of crops.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot,
no global state, no display needed) and written as PNG atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from asymsr.schema.records import EvaluationSummary
from asymsr.sr.metrics import psnr
from asymsr.sr.protocol import make_test_pair, quantize
from asymsr.util.fs import atomic_path
from asymsr.util.images import read_image

if TYPE_CHECKING:
    from asymsr.eval.inference import Predictor

COSTS = ("params", "latency_ms")
# cost -> (file name, caption) of the PSNR-vs-cost plots that ``asymsr report --plots-dir`` writes
COST_PLOTS = {
    "params": ("psnr_vs_params.png", "PSNR vs parameters"),
    "latency_ms": ("psnr_vs_latency.png", "PSNR vs latency"),
}
PANEL_INCHES = (4.0, 3.2)  # width, height of one PSNR-vs-cost subplot
CROP_INCHES = 2.2  # side of one visual-comparison panel
DPI = 100


def _save(figure: Figure, out: str | os.PathLike[str]) -> Path:
    """Render ``figure`` with Agg and write it to ``out`` as PNG, atomically."""
    out = Path(out)
    FigureCanvasAgg(figure)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return out


def _check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")


def _is_reference(summary: EvaluationSummary) -> bool:
    """True for a model-free baseline (bicubic: ``params`` 0)."""
    return summary.efficiency.params == 0


def summaries_with_cost(summaries: Mapping[str, EvaluationSummary], cost: str) -> list[str]:
    """Labels of the summaries that can be placed on a ``cost`` axis (bicubic's 0 parameters excluded)."""
    _check_cost(cost)
    return [
        label
        for label, summary in summaries.items()
        if getattr(summary.efficiency, cost) is not None and not _is_reference(summary)
    ]


def _all_cases(summaries: Mapping[str, EvaluationSummary]) -> list[tuple[str, str]]:
    """(dataset, scale key) pairs present in any summary, in first-seen order."""
    cases: dict[tuple[str, str], None] = {}
    for summary in summaries.values():
        cases.update(dict.fromkeys(summary.cases()))
    return list(cases)


def _latency_label(summaries: Mapping[str, EvaluationSummary], labels: Sequence[str]) -> str:
    efficiencies = [summaries[label].efficiency for label in labels]
    settings = dict.fromkeys(f"{e.device or '?'}, {e.threads or '?'} threads" for e in efficiencies)
    return f"latency (ms, {'; '.join(settings)})"


def psnr_cost_plot(summaries: Mapping[str, EvaluationSummary], cost: str, out: str | os.PathLike[str]) -> Path:
    """PSNR (dB) against ``cost`` for labelled ``asymsr evaluate`` summaries; writes a PNG to ``out``.

    ``cost`` is ``"params"`` (number of parameters) or ``"latency_ms"`` (median latency in
    milliseconds, as measured by ``asymsr evaluate`` on the device and threads it names). One
    subplot per (dataset, scale) case, each model a labelled point. Summaries without the cost
    figure are left out; a baseline with 0 parameters (bicubic) is drawn in the params plot as a
    dashed horizontal line at its PSNR. Returns ``out``.

    Raises:
        ValueError: ``cost`` is unknown, or no summary has a ``cost`` figure to plot.
    """
    labels = summaries_with_cost(summaries, cost)
    if not labels:
        raise ValueError(f"no summary has a {cost!r} figure to plot")
    references = [label for label, summary in summaries.items() if _is_reference(summary)] if cost == "params" else []
    cases = _all_cases(summaries)
    columns = min(3, len(cases))
    rows = math.ceil(len(cases) / columns)
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    xlabel = "parameters" if cost == "params" else _latency_label(summaries, labels)
    colours = {label: f"C{index}" for index, label in enumerate(summaries)}  # the same in every subplot
    for index, (dataset, scale) in enumerate(cases):
        ax = axes[index // columns][index % columns]
        for label in labels:
            scores = summaries[label].scores.get(dataset, {}).get(scale)
            if scores is None:
                continue
            x, y = getattr(summaries[label].efficiency, cost), scores.psnr
            ax.scatter([x], [y], zorder=3, color=colours[label])
            ax.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize="small")
        for label in references:
            scores = summaries[label].scores.get(dataset, {}).get(scale)
            if scores is not None:
                ax.axhline(scores.psnr, linestyle="--", color="gray", label=f"{label} (0 parameters)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="lower right")
        ax.margins(x=0.25, y=0.2)
        if cost == "params":
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1e3:,.0f}k"))
        ax.set_title(f"{dataset} {scale}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    for index in range(len(cases), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    return _save(figure, out)


def high_error_window(error: np.ndarray, size: int, border: int = 0) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window of ``error`` with the largest sum.

    ``error`` is a non-negative (H, W) map (any units). Windows stay ``border`` pixels away from
    every edge. Sums come from an integral image; ties go to the first window in row-major
    order, so the choice is deterministic.

    Raises:
        ValueError: the window does not fit inside the border.
    """
    height, width = error.shape
    if size < 1 or size > height - 2 * border or size > width - 2 * border:
        raise ValueError(f"a {size}x{size} window does not fit in {error.shape} with border {border}")
    region = np.asarray(error, dtype=np.float64)[border : height - border, border : width - border]
    integral = np.pad(region.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top) + border, int(left) + border


def visual_comparison(
    image_paths: Sequence[str | os.PathLike[str]],
    predictors: Mapping[str, Predictor],
    scale: int,
    out: str | os.PathLike[str],
    crop: int = 96,
) -> Path:
    """Grid of luminance crops: one row per image; ground truth, then each predictor in order.

    Each image goes through the evaluation protocol (:func:`asymsr.sr.protocol.make_test_pair`)
    and every predictor runs on the bicubic network input. The crop, ``crop`` x ``crop`` pixels
    (smaller if the image is), is the window where bicubic's absolute error is largest,
    searched only ``scale`` pixels or more from the edges, i.e. inside the region that the
    protocol scores. Panels show luminance in [0, 1] (clipped, gray scale); titles give the
    label and the crop's PSNR in dB, computed as :func:`asymsr.sr.protocol.score` does (output
    quantised to integers on [0, 255]) but over the crop alone with no further border.
    Returns ``out``.

    Raises:
        ValueError: no images or no predictors, or an image too small for any crop.
    """
    if not image_paths or not predictors:
        raise ValueError("visual comparison needs at least one image and one predictor")
    columns = 1 + len(predictors)
    figure = Figure(figsize=(CROP_INCHES * columns, (CROP_INCHES + 0.4) * len(image_paths)), layout="constrained")
    axes = figure.subplots(len(image_paths), columns, squeeze=False)
    for row, path in enumerate(image_paths):
        pair = make_test_pair(read_image(path), scale)
        height, width = pair.hr_y.shape
        size = min(crop, height - 2 * scale, width - 2 * scale)
        if size < 1:
            raise ValueError(f"{path}: image of shape {pair.hr_y.shape} is too small to crop at scale {scale}")
        top, left = high_error_window(np.abs(pair.network_input * 255.0 - pair.hr_y), size, border=scale)
        window = (slice(top, top + size), slice(left, left + size))
        truth = pair.hr_y[window]
        panels = [(Path(path).name, truth / 255.0)]
        for label, predictor in predictors.items():
            output = predictor(pair.network_input)[window]
            panels.append((f"{label}\n{psnr(truth, quantize(output)):.2f} dB", output))
        for column, (title, values) in enumerate(panels):
            ax = axes[row][column]
            ax.imshow(np.clip(values, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(title, fontsize="small")
            ax.set_axis_off()
    figure.suptitle(f"x{scale}: luminance crops where bicubic errs most", fontsize="medium")
    return _save(figure, out)


def report_plots(
    summaries: Mapping[str, EvaluationSummary],
    plots_dir: str | os.PathLike[str],
    predictors: Mapping[str, Predictor] | None = None,
    image_paths: Sequence[str | os.PathLike[str]] = (),
    scale: int = 4,
    crop: int = 96,
) -> dict[str, Path]:
    """Write the figures of ``asymsr report --plots-dir`` into ``plots_dir``; returns caption -> file.

    The PSNR-vs-cost plots of :data:`COST_PLOTS` for every cost that some summary has (the
    others are skipped), and ``visual_x<scale>.png`` when both ``predictors`` and
    ``image_paths`` are given (see :func:`visual_comparison`).
    """
    plots_dir = Path(plots_dir)
    written: dict[str, Path] = {}
    for cost, (name, caption) in COST_PLOTS.items():
        if summaries_with_cost(summaries, cost):
            written[caption] = psnr_cost_plot(summaries, cost, plots_dir / name)
    if predictors and image_paths:
        out = plots_dir / f"visual_x{scale}.png"
        written[f"x{scale} crops"] = visual_comparison(image_paths, predictors, scale, out, crop=crop)
    return written
