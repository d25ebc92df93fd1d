"""The table of ``benchmarks/label_term.sh PATCHES RAW OUT``: one row per label weight.

    .venv/bin/python benchmarks/label_term_table.py OUT      # writes OUT.md and OUT.json

Each row: the label weight, the fine-tuning's steps, the distilled step's validation PSNR and
weighted MSE to the teacher and whether it was kept (from ``OUT/label_<w>/compression.json``),
Set5 and Set14 test PSNR of ``model.pt`` (from ``OUT/label_<w>.eval.json``) and the ``compress``
call's wall time (``OUT/label_<w>.time``). A distilled step that was not kept left the refit in
``model.pt``: its test scores are the refit's, not the fine-tuning's, and the row says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CELLS = [(dataset, scale) for dataset in ("Set5", "Set14") for scale in ("x2", "x3", "x4")]


class TableError(Exception):
    """A one-line reason the table cannot be made."""


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TableError(f"{path}: {error}") from error


def row(out: Path, weight: str) -> dict[str, Any]:
    """One label weight's figures."""
    record_path = out / f"label_{weight}" / "compression.json"
    record = _read(record_path)
    distilled = next((step for step in record.get("history", []) if step.get("name") == "distilled"), None)
    if distilled is None:
        raise TableError(f"{record_path}: no distilled step (was STEPS 0?)")
    eval_path = out / f"label_{weight}.eval.json"
    scores = _read(eval_path).get("scores", {})
    try:
        test = {f"{dataset} {scale}": scores[dataset][scale]["psnr"] for dataset, scale in CELLS}
        seconds = float((out / f"label_{weight}.time").read_text())
    except KeyError as error:
        raise TableError(f"{eval_path}: no score for {error}") from error
    except (OSError, ValueError) as error:
        raise TableError(f"{out / f'label_{weight}.time'}: {error}") from error
    return {
        "label": float(weight),
        "steps": record.get("steps"),
        "val_psnr": distilled["val_psnr"],
        "teacher_mse": distilled["teacher_mse"],
        "kept": distilled.get("kept", True),
        "test_psnr": test,
        "seconds": seconds,
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
        mse = f"{r['teacher_mse']:.3e}" + ("" if r["kept"] else " (not kept: test scores are the refit's)")
        lines.append(f"| {r['label']:g} | {r['val_psnr']:.3f} | {mse} | {cells} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def weights_in(out: Path) -> list[str]:
    """The label weights of OUT's ``label_<w>/`` folders, in increasing order."""
    names = [p.name.removeprefix("label_") for p in out.glob("label_*") if p.is_dir()]
    bad = [name for name in names if not name.replace(".", "", 1).isdigit()]
    if bad:
        raise TableError(f"{out}: label_{bad[0]}/ is not a label_<weight>/ folder")
    if not names:
        raise TableError(f"{out}: no label_<weight>/ folders")
    return sorted(names, key=float)


def main(out: Path) -> None:
    rows = [row(out, weight) for weight in weights_in(out)]
    table = markdown(rows)
    out = out.resolve()
    (out.parent / f"{out.name}.md").write_text(table)
    (out.parent / f"{out.name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table, end="")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: label_term_table.py OUT", file=sys.stderr)
        sys.exit(2)
    try:
        main(Path(sys.argv[1]))
    except TableError as error:
        print(f"label_term_table.py: {error}", file=sys.stderr)
        sys.exit(2)
