"""How much better is the teacher when its output is averaged over flipped inputs (self-ensemble)?

    .venv/bin/python benchmarks/teacher_ensemble.py --views 1,2,4 --scales 2,4 --out benchmarks/results/teacher_ensemble

A distillation target better than the teacher is the only way a student distilled from it can
end above it (``compress.loss.teacher_views``). This measures the premise: the teacher's test
PSNR when its output is the mean of its outputs on the identity and ``views - 1`` further flips
of the input (:class:`asymsr.nn.ensemble.FlipEnsemble`), each flipped back. Writes
``OUT.json`` and ``OUT.md`` (PSNR to 0.001 dB) and prints the table with the CPU named.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asymsr.bench.host import cpu_model
from asymsr.eval.evaluation import evaluate_folders, mean_scores
from asymsr.eval.inference import predictor_for
from asymsr.mlops.loading import load_teacher
from asymsr.nn.ensemble import VIEWS, FlipEnsemble
from asymsr.sr.scales import check_scale

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER_SHA256 = "610afbe725f0432d983297114fff114381569f0f886ff559db52f3d10f50d59c"
TEACHER = f"{SHARED}/reference/vdsr_reference_x234.npz#sha256={TEACHER_SHA256}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", default="1,2,4", help="comma-separated, each 1, 2, 4 or 8")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--test", type=Path, action="append", help="test folder (repeatable; default Set5, Set14)")
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        views = [int(v) for v in args.views.split(",")]
        scales = [int(s) for s in args.scales.split(",")]
    except ValueError:
        parser.error(f"--views {args.views} / --scales {args.scales}: comma-separated integers")
    if any(v not in VIEWS for v in views):
        parser.error(f"--views {args.views}: each must be one of {VIEWS}")
    try:
        scales = [check_scale(scale) for scale in scales]  # as `asymsr evaluate` checks them, before any work
    except ValueError as error:
        parser.error(f"--scales {args.scales}: {error}")
    tests = args.test or [SHARED / "datasets" / "Set5", SHARED / "datasets" / "Set14"]
    for folder in tests:
        if not folder.is_dir():
            parser.error(f"--test {folder}: no such folder")
    for path in (args.out.with_suffix(".json"), args.out.with_suffix(".md")):
        if path.exists():
            parser.error(f"--out {args.out}: {path} exists; pick another")
    try:
        teacher, _ = load_teacher(args.teacher, args.out.parent / ".downloads")
    except Exception as error:  # a missing file, a wrong hash, not a VDSR: one line either way
        parser.error(f"--teacher {args.teacher}: {' '.join(str(error).split())}")
    rows = []
    for count in views:
        predictor = predictor_for(teacher, "vdsr", args.teacher, torch.device("cpu"))
        predictor.model = FlipEnsemble(predictor.stored, count).eval()
        started = time.perf_counter()
        scores = mean_scores(evaluate_folders(predictor, tests, scales, progress=False))
        psnr = {f"{name} {scale}": s.psnr for name, by in scores.items() for scale, s in by.items()}
        rows.append({"views": count, "seconds": time.perf_counter() - started, "psnr": psnr})
        print(f"views={count}: {rows[-1]['seconds']:.0f} s, {psnr}", flush=True)
    host = f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    cells = list(rows[0]["psnr"])
    lines = ["| views | " + " | ".join(cells) + " | time (s) |", "|" + "---|" * (len(cells) + 2)]
    for row in rows:
        gains = [f"{row['psnr'][c]:.3f} ({row['psnr'][c] - rows[0]['psnr'][c]:+.3f})" for c in cells]
        lines.append(f"| {row['views']} | " + " | ".join(gains) + f" | {row['seconds']:.0f} |")
    text = "\n".join(lines) + f"\n\n(in brackets: against views={rows[0]['views']}) {host}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"host": host, "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
