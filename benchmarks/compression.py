"""Compression benchmarks: the ablation of the three steps, and PSNR against rank.

    .venv/bin/python benchmarks/compression.py ablation --patches DIR --out benchmarks/results/compression_ablation
    .venv/bin/python benchmarks/compression.py ranks --patches DIR --out benchmarks/results/compression_ranks

``--patches`` is a patch folder of the 291 images (``asymsr prepare`` with the transfer
profile); the teacher is the published VDSR (``--teacher``, default under ``../shared``), the
test sets ``--test`` (default Set5 and Set14 under ``../shared/datasets``).

* ``ablation``: closed form only; + refit (1x3 factors); + refit of both factors (``--sweeps``);
  + fine-tuning with the output loss; + fine-tuning with the output and block-feature losses
  (the same number of steps, at ``--lr``, from the 1x3 refit; ``--no-finetune`` leaves these
  two out), each row with its time.
* ``ranks``: r = 16, 32, 48, 64 from the same teacher and budget (refit + ``--steps``
  distillation steps), with parameters and CPU latency at 256x256 (medians of interleaved
  rounds in this process, so the ratios are comparable).

Writes ``OUT.json`` and ``OUT.md`` and prints the table; ``table --out OUT`` rewrites ``OUT.md``
from ``OUT.json``. Every row's model and ``compression.json`` stay under ``OUT/`` for
``asymsr evaluate`` or ``asymsr upscale``. Besides the test PSNR of the model kept, each row
shows how close its last step came to the teacher's output on the held-out patches (PSNR of the
student's output against the teacher's, dB) and whether that step was kept (a step is kept only
if it brings the output closer to the teacher than the step before).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from asymsr.eval.efficiency import measure_latency
from asymsr.eval.evaluation import evaluate_folders, mean_scores
from asymsr.eval.inference import load_predictor
from asymsr.mlops.loading import load_teacher
from asymsr.schema.params import CompressConfig
from asymsr.training.compression import Job, compress

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER_SHA256 = "610afbe725f0432d983297114fff114381569f0f886ff559db52f3d10f50d59c"
TEACHER = f"{SHARED}/reference/vdsr_reference_x234.npz#sha256={TEACHER_SHA256}"
FINETUNE = {"lr": 1e-4, "batch_size": 16, "steps_per_epoch": 100, "device": "cpu", "val_crop": 128}


def run_case(name: str, settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Compress with ``settings``, then score the model on the test sets; returns the table row."""
    teacher, digest = load_teacher(args.teacher, args.out / ".downloads")
    config = CompressConfig.model_validate({"finetune": {**FINETUNE, "lr": args.lr}, **settings})
    started = time.perf_counter()
    record = compress(Job(teacher, args.teacher, digest, config, args.patches, args.out / name, progress=False))
    seconds = time.perf_counter() - started
    predictor = load_predictor(args.out / name / "model.pt", device="cpu")
    scores = mean_scores(evaluate_folders(predictor, args.test, [2, 3, 4], progress=False))
    psnr = {f"{folder} {scale}": s.psnr for folder, by_scale in scores.items() for scale, s in by_scale.items()}
    print(f"{name}: {seconds:.0f} s, {psnr}", flush=True)
    return {"name": name, "seconds": seconds, "parameters": record.parameters, "psnr": psnr, "settings": settings}


def ablation(args: argparse.Namespace) -> list[dict[str, Any]]:
    steps = args.steps
    cases: dict[str, dict[str, Any]] = {
        "closed form": {"steps": 0, "refit": False},
        "+ refit": {"steps": 0, "refit": True},
        f"+ refit of both factors ({args.sweeps} sweeps)": {"steps": 0, "refit": True, "refit_sweeps": args.sweeps},
    }
    if args.finetune:
        cases[f"+ {steps} steps, output loss"] = {"steps": steps, "refit": True}
        cases[f"+ {steps} steps, output + feature loss"] = {
            "steps": steps,
            "refit": True,
            "loss": {"teacher": 1.0, "feature": 1.0},
        }
    return [run_case(name, settings, args) for name, settings in cases.items()]


def ranks(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [run_case(f"r={rank}", {"rank": rank, "steps": args.steps}, args) for rank in (16, 32, 48, 64)]
    models = [load_predictor(args.out / row["name"] / "model.pt", device="cpu").model for row in rows]
    teacher, _ = load_teacher(args.teacher, args.out / ".downloads")
    timings: dict[int, list[float]] = {index: [] for index in range(len(models) + 1)}
    with torch.inference_mode():
        for _ in range(args.rounds):  # interleaved: every model once per round
            for index, model in enumerate([*models, teacher]):
                timings[index].append(measure_latency(model, 256, 256, warmup=0, repeats=1)["latency_ms"])
    medians = [sorted(values)[len(values) // 2] for values in timings.values()]
    for row, median in zip(rows, medians, strict=False):
        row["latency_ms"] = median
        row["latency_vs_teacher"] = median / medians[-1]
    return rows


def step_figures(out: Path, row: dict[str, Any]) -> tuple[float, str]:
    """(held-out PSNR of the last step tried against the teacher's output, dB; whether it was kept)."""
    history = json.loads((out / row["name"] / "compression.json").read_text())["history"]
    last = history[-1]
    return 10 * math.log10(1 / last["teacher_mse"]), f"{last['name']}: {'kept' if last['kept'] else 'not kept'}"


def table(rows: list[dict[str, Any]], out: Path) -> str:
    cells = list(rows[0]["psnr"])
    header = ["model", "parameters", *cells, "time (s)", "last step vs teacher (dB)", "last step"]
    header += ["ms at 256", "vs VDSR"] if "latency_ms" in rows[0] else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        to_teacher, verdict = step_figures(out, row)
        values = [row["name"], f"{row['parameters']:,}", *(f"{row['psnr'][cell]:.2f}" for cell in cells)]
        values += [f"{row['seconds']:.0f}", f"{to_teacher:.2f}", verdict]
        if "latency_ms" in row:
            values += [f"{row['latency_ms']:.0f}", f"{row['latency_vs_teacher']:.2f}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write(out: Path, host: str, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"host": host, "rows": rows}, indent=2))
    text = f"{table(rows, out)}\n\n{host}\n"
    out.with_suffix(".md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["ablation", "ranks", "table"], help="table: rewrite OUT.md from OUT.json")
    parser.add_argument("--patches", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--test", type=Path, action="append", help="test folder (repeatable; default Set5, Set14)")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps per case")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (ranks)")
    parser.add_argument("--lr", type=float, default=FINETUNE["lr"], help="fine-tuning lr (Adam)")
    parser.add_argument("--sweeps", type=int, default=2, help="refit_sweeps of the both-factors row (ablation)")
    parser.add_argument(
        "--no-finetune", dest="finetune", action="store_false", help="ablation: the closed-form and refit rows only"
    )
    args = parser.parse_args()
    if args.mode == "table":
        saved = json.loads(args.out.with_suffix(".json").read_text())
        write(args.out, saved["host"], saved["rows"])
        return
    if args.patches is None:
        parser.error(f"{args.mode} needs --patches")
    args.test = args.test or [SHARED / "datasets" / "Set5", SHARED / "datasets" / "Set14"]
    rows = ablation(args) if args.mode == "ablation" else ranks(args)
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    write(args.out, host, rows)


if __name__ == "__main__":
    main()
