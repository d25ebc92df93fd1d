"""Side-by-side comparison of evaluation summaries (``asymsr report``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asymsr.schema.records import Efficiency, EvaluationSummary

Summaries = dict[str, EvaluationSummary]  # column label -> summary; the first is the reference


def gain_rows(summaries: Summaries) -> list[dict[str, Any]]:
    """PSNR gain (dB) of every labelled summary after the first over the first, per dataset and scale.

    One row per (model, dataset, scale), with a ``case`` label for plots (``dvc plots``).
    """
    labels = list(summaries)
    reference = summaries[labels[0]]
    return [
        {
            "model": label,
            "dataset": dataset,
            "scale": scale,
            "case": f"{label} {dataset} {scale}",
            "psnr_gain_db": summaries[label].scores[dataset][scale].psnr - reference.scores[dataset][scale].psnr,
        }
        for label in labels[1:]
        for dataset, scale in reference.cases()
    ]


def headline(summaries: Summaries) -> dict[str, dict[str, float]]:
    """The few named figures that `dvc metrics show` and `dvc exp show` put in columns: each
    model's mean test PSNR (dB, over every set and scale), and, for the networks, parameters and
    latency (ms, the fastest deploy form, where measured). Nested by figure, then label."""
    figures: dict[str, dict[str, float]] = {"mean_psnr": {}, "params": {}, "latency_ms": {}}
    for label, summary in summaries.items():
        figures["mean_psnr"][label] = round(summary.mean("psnr"), 4)
        efficiency = summary.efficiency
        if efficiency.params:  # bicubic has no network
            figures["params"][label] = efficiency.params
            if efficiency.latency_ms is not None:
                figures["latency_ms"][label] = round(efficiency.latency_ms, 1)
    return {name: values for name, values in figures.items() if values}


def comparison_table(summaries: Summaries) -> str:
    """Markdown table: PSNR/SSIM of each labelled summary per dataset and scale.

    The first summary is the reference: every other column also shows its PSNR gain over it.
    Then one row per model with parameters and multiply-adds per pixel.
    """
    labels = list(summaries)
    header = ["dataset", "scale"] + [f"{label} PSNR / SSIM" for label in labels]
    header += [f"{label} gain (dB)" for label in labels[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = gain_rows(summaries)
    gain = {(row["model"], row["dataset"], row["scale"]): row["psnr_gain_db"] for row in rows}
    for dataset, scale in summaries[labels[0]].cases():
        cells = [dataset, scale]
        for label in labels:
            scores = summaries[label].scores[dataset][scale]
            cells.append(f"{scores.psnr:.2f} / {scores.ssim:.4f}")
        cells += [f"{gain[(label, dataset, scale)]:+.2f}" for label in labels[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        mean_cells = ["mean gain", ""] + [""] * len(labels)
        for label in labels[1:]:
            values = [row["psnr_gain_db"] for row in rows if row["model"] == label]
            mean_cells.append(f"{sum(values) / len(values):+.2f}")
        lines.append("| " + " | ".join(mean_cells) + " |")
    lines += ["", "| model | parameters | multiply-adds / pixel | latency (ms) |", "|---|---|---|---|"]
    for label, summary in summaries.items():
        efficiency = summary.efficiency
        latency = _latency_cell(efficiency) if efficiency.has_latency else "-"
        macs = f"{efficiency.macs_per_pixel:,.0f}" if efficiency.macs_per_pixel is not None else "-"
        lines.append(f"| {label} | {efficiency.params:,} | {macs} | {latency} |")
    return "\n".join(lines) + "\n"


def _latency_cell(efficiency: Efficiency) -> str:
    """Median latency (ms) with its device, threads and the deploy form it was timed in."""
    setting = [str(efficiency.device), f"{efficiency.threads} threads"]
    if efficiency.deploy is not None:
        setting.append(f"{efficiency.deploy.form}/{efficiency.deploy.memory_format}")
    return f"{efficiency.latency_ms:.1f} ({', '.join(setting)})"


# Published PSNR (dB) / SSIM on the Y channel with ``scale`` pixels shaved per border, from
# Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks"
# (CVPR 2016), as copied in ../shared/PAPER.md: {dataset: {scale: {method: (PSNR, SSIM)}}}.
PUBLISHED: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "Set5": {
        "x2": {"bicubic": (33.66, 0.9299), "vdsr": (37.53, 0.9587)},
        "x3": {"bicubic": (30.39, 0.8682), "vdsr": (33.66, 0.9213)},
        "x4": {"bicubic": (28.42, 0.8104), "vdsr": (31.35, 0.8838)},
    },
    "Set14": {
        "x2": {"bicubic": (30.24, 0.8688), "vdsr": (33.03, 0.9124)},
        "x3": {"bicubic": (27.55, 0.7742), "vdsr": (29.77, 0.8314)},
        "x4": {"bicubic": (26.00, 0.7027), "vdsr": (28.01, 0.7674)},
    },
    "B100": {
        "x2": {"bicubic": (29.56, 0.8431), "vdsr": (31.90, 0.8960)},
        "x3": {"bicubic": (27.21, 0.7385), "vdsr": (28.82, 0.7976)},
        "x4": {"bicubic": (25.96, 0.6675), "vdsr": (27.29, 0.7251)},
    },
    "Urban100": {
        "x2": {"bicubic": (26.88, 0.8403), "vdsr": (30.76, 0.9140)},
        "x3": {"bicubic": (24.46, 0.7349), "vdsr": (27.14, 0.8279)},
        "x4": {"bicubic": (23.14, 0.6577), "vdsr": (25.18, 0.7524)},
    },
}


def published_table(datasets: list[str]) -> str:
    """Markdown table of the VDSR paper's bicubic and VDSR PSNR (dB) / SSIM for ``datasets``.

    Only Set5, Set14, B100 and Urban100 (exact folder names) have published figures; the
    others are named in a one-line note. The datasets keep their order in ``datasets``.
    """
    names = list(dict.fromkeys(datasets))
    known = [name for name in names if name in PUBLISHED]
    unknown = [name for name in names if name not in PUBLISHED]
    lines: list[str] = []
    if known:
        lines += [
            "Published by Kim et al. (VDSR, CVPR 2016), Y channel, border = scale:",
            "",
            "| dataset | scale | bicubic PSNR / SSIM | VDSR PSNR / SSIM |",
            "|---|---|---|---|",
        ]
        for name in known:
            for scale, methods in PUBLISHED[name].items():
                cells = [f"{psnr_db:.2f} / {ssim_value:.4f}" for psnr_db, ssim_value in methods.values()]
                lines.append(f"| {name} | {scale} | " + " | ".join(cells) + " |")
    if unknown:
        if lines:
            lines.append("")
        lines.append(f"No published figures for: {', '.join(unknown)}.")
    return "\n".join(lines) + "\n"


def comparison_report(summaries: Summaries, plots: dict[str, str]) -> str:
    """Full Markdown comparison: measured table, published figures, and links to plots.

    ``plots`` maps a caption to an image path relative to the Markdown file's folder, in the
    order the images should appear.
    """
    datasets = list(dict.fromkeys(dataset for summary in summaries.values() for dataset, _ in summary.cases()))
    sections = [
        f"# Comparison: {' vs '.join(summaries)}",
        "",
        "## Measured",
        "",
        comparison_table(summaries),
        "## Published",
        "",
        published_table(datasets),
    ]
    if plots:
        sections += ["## Plots", ""]
        for caption, path in plots.items():
            sections += [f"![{caption}]({Path(path).as_posix()})", ""]
    return "\n".join(sections).rstrip("\n") + "\n"
