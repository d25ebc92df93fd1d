"""The table of ``benchmarks/label_term.sh OUT``: one row per label weight.

    .venv/bin/python benchmarks/label_term_table.py OUT      # writes OUT.md and OUT.json

Each row: the label weight, the distilled step's validation PSNR and weighted MSE to the
teacher (from ``OUT/label_<w>/compression.json``), Set5 and Set14 test PSNR (from
``OUT/label_<w>.eval.json``) and the ``compress`` call's wall time (``OUT/label_<w>.time``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CELLS = [(dataset, scale) for dataset in ("Set5", "Set14") for scale in ("x2", "x3", "x4")]


def row(out: Path, weight: str) -> dict[str, Any]:
    """One label weight's figures."""
    record = json.loads((out / f"label_{weight}" / "compression.json").read_text())
    distilled = next(step for step in record["history"] if step["name"] == "distilled")
    scores = json.loads((out / f"label_{weight}.eval.json").read_text())["scores"]
    return {
        "label": float(weight),
        "val_psnr": distilled["val_psnr"],
        "teacher_mse": distilled["teacher_mse"],
        "test_psnr": {f"{dataset} {scale}": scores[dataset][scale]["psnr"] for dataset, scale in CELLS},
        "seconds": float((out / f"label_{weight}.time").read_text()),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, PSNR to 0.001 dB (the differences are that small)."""
    head = (
        "| label weight | val PSNR (dB) | weighted MSE to the teacher | "
        + " | ".join(f"{d} {s}" for d, s in CELLS)
        + " | compress (s) |"
    )
    lines = [head, "|" + "---|" * (len(CELLS) + 4)]
    for r in rows:
        cells = " | ".join(f"{r['test_psnr'][f'{d} {s}']:.3f}" for d, s in CELLS)
        lines.append(
            f"| {r['label']:g} | {r['val_psnr']:.3f} | {r['teacher_mse']:.3e} | {cells} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(out: Path) -> None:
    weights = sorted((p.name.removeprefix("label_") for p in out.glob("label_*") if p.is_dir()), key=float)
    if not weights:
        print(f"label_term_table.py: {out}: no label_<weight>/ folders", file=sys.stderr)
        sys.exit(2)
    rows = [row(out, weight) for weight in weights]
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table, end="")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: label_term_table.py OUT", file=sys.stderr)
        sys.exit(2)
    main(Path(sys.argv[1]))
