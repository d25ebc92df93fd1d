"""Side-by-side comparison of evaluation summaries (``asymsr report``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``asymsr evaluate`` summary JSON, with a clear error for other files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    summary = json.loads(path.read_text())
    if not isinstance(summary, dict) or "efficiency" not in summary:
        raise ValueError(f"{path}: not an `asymsr evaluate` summary (no 'efficiency' block)")
    return summary


def _cases(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, scale key) pairs of a summary, in its order."""
    return [(dataset, scale) for dataset, by_scale in summary.items() if dataset != "efficiency" for scale in by_scale]


def gain_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
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
            "psnr_gain_db": summaries[label][dataset][scale]["psnr"] - reference[dataset][scale]["psnr"],
        }
        for label in labels[1:]
        for dataset, scale in _cases(reference)
    ]


def comparison_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown table: PSNR/SSIM of each labelled summary per dataset and scale.

    The first summary is the reference: every other column also shows its PSNR gain over it.
    Then one row per model with parameters and multiply-adds per pixel.
    """
    labels = list(summaries)
    reference = summaries[labels[0]]
    header = ["dataset", "scale"] + [f"{label} PSNR / SSIM" for label in labels]
    header += [f"{label} gain (dB)" for label in labels[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = gain_rows(summaries)
    gain = {(row["model"], row["dataset"], row["scale"]): row["psnr_gain_db"] for row in rows}
    gains: dict[str, list[float]] = {
        label: [row["psnr_gain_db"] for row in rows if row["model"] == label] for label in labels[1:]
    }
    for dataset, scale in _cases(reference):
        cells = [dataset, scale]
        for label in labels:
            scores = summaries[label][dataset][scale]
            cells.append(f"{scores['psnr']:.2f} / {scores['ssim']:.4f}")
        cells += [f"{gain[(label, dataset, scale)]:+.2f}" for label in labels[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    if gains and all(gains.values()):
        mean_cells = ["mean gain", ""] + [""] * len(labels)
        mean_cells += [f"{sum(values) / len(values):+.2f}" for values in gains.values()]
        lines.append("| " + " | ".join(mean_cells) + " |")
    lines += ["", "| model | parameters | multiply-adds / pixel | latency (ms) |", "|---|---|---|---|"]
    for label, summary in summaries.items():
        efficiency = summary["efficiency"]
        latency = (
            f"{efficiency['latency_ms']:.1f} ({efficiency['device']}, {efficiency['threads']} threads)"
            if "latency_ms" in efficiency
            else "-"
        )
        macs = f"{efficiency['macs_per_pixel']:,.0f}" if "macs_per_pixel" in efficiency else "-"
        lines.append(f"| {label} | {efficiency.get('params', 0):,} | {macs} | {latency} |")
    return "\n".join(lines) + "\n"
