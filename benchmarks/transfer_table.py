"""The transfer profile's results table: PSNR in all 12 cells beside the VDSR paper's.

    .venv/bin/python benchmarks/transfer_table.py reports/transfer

Reads the `asymsr evaluate` summaries ``vdsr.json`` (the teacher), ``asym_vdsr_compressed.json``,
``asym_vdsr.json`` (from scratch) and ``bicubic.json`` in the folder (any that are missing are
left out) and prints one Markdown table: PSNR (dB) per dataset and scale beside the paper's
VDSR, with the compressed model's differences to the paper and to its teacher.
"""

from __future__ import annotations

import sys
from pathlib import Path

from asymsr.eval.report import PUBLISHED
from asymsr.schema.records import EvaluationSummary

DATASETS = ("Set5", "Set14", "B100", "Urban100")
SCALES = ("x2", "x3", "x4")
COLUMNS = {  # summary file stem -> column
    "vdsr": "teacher (published weights)",
    "asym_vdsr_compressed": "**compressed Asym_VDSR**",
    "asym_vdsr": "Asym_VDSR from scratch",
    "bicubic": "bicubic",
}
CELLS = [(dataset, scale) for dataset in DATASETS for scale in SCALES]


def psnr(summary: EvaluationSummary) -> dict[tuple[str, str], float]:
    return {(d, s): summary.scores[d][s].psnr for d, s in CELLS if d in summary.scores and s in summary.scores[d]}


def table(folder: Path) -> str:
    """One row per (dataset, scale): the paper's VDSR, each model found, and the compressed
    model's differences to the paper and to its teacher (3 decimals)."""
    found = {
        stem: psnr(EvaluationSummary.read(folder / f"{stem}.json"))
        for stem in COLUMNS
        if (folder / f"{stem}.json").exists()
    }
    header = ["dataset", "scale", "VDSR paper", *(COLUMNS[stem] for stem in found), "compressed - paper", "- teacher"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    compressed, teacher = found.get("asym_vdsr_compressed", {}), found.get("vdsr", {})
    for cell in CELLS:
        paper = PUBLISHED[cell[0]][cell[1]]["vdsr"][0]
        values = [f"{found[stem][cell]:.2f}" if cell in found[stem] else "" for stem in found]
        gaps = [
            f"{compressed[cell] - other:+.3f}" if cell in compressed and other is not None else ""
            for other in (paper, teacher.get(cell))
        ]
        lines.append("| " + " | ".join([*cell, f"{paper:.2f}", *values, *gaps]) + " |")
    return "\n".join(lines)


def main(folder: Path) -> None:
    print(table(folder))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: transfer_table.py FOLDER")
    main(Path(sys.argv[1]))
