"""Compression benchmarks: the ablation of the three steps, and PSNR against rank.

    .venv/bin/python benchmarks/compression.py ablation --patches DIR --out benchmarks/results/compression_ablation
    .venv/bin/python benchmarks/compression.py ranks --patches DIR --out benchmarks/results/compression_ranks
    .venv/bin/python benchmarks/compression.py variants --params profiles/transfer.yaml --vary loss.label=0,0.1,1 \
        --steps 1000 --patches DIR --val DIR --out benchmarks/results/label_term

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
* ``variants``: a profile's own ``compress`` block (``--params``) with ``--set KEY=VALUE``
  applied (dotted keys of that block, repeatable) and, for each value of ``--vary KEY=V1,V2,...``,
  one row; ``--steps`` overrides the block's steps, ``--val`` gives each row its validation
  PSNR. PSNR to 0.001 dB, as such variants differ by less than 0.01.

Writes ``OUT.json`` and ``OUT.md`` and prints the table; ``table --out OUT`` rewrites ``OUT.md``
from ``OUT.json`` (rows of older runs keep their last-step figures only under ``OUT/``, which a
clone lacks: their table is then printed and ``OUT.md`` kept). ``OUT`` itself must not exist
yet (a bad flag, input or setting is refused with one line and exit 2 before anything is
written). Every row's model and
``compression.json`` stay under ``OUT/`` for ``asymsr evaluate`` or ``asymsr upscale``. Besides
the test PSNR of the model kept, each row shows how close its last step came to the teacher's
output on the held-out patches (PSNR of the student's output against the teacher's, dB) and
whether that step was kept (a step is kept only if it brings the output closer to the teacher
than the step before).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError

from asymsr.bench.host import cpu_model
from asymsr.eval.efficiency import measure_latency
from asymsr.eval.evaluation import evaluate_folders, mean_scores
from asymsr.eval.inference import load_predictor
from asymsr.mlops.loading import load_teacher
from asymsr.schema.params import CompressConfig, load_params, parse_yaml, problems
from asymsr.stages import compress as compress_stage
from asymsr.training.compression import Job, check_before_start, compress

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER_SHA256 = "610afbe725f0432d983297114fff114381569f0f886ff559db52f3d10f50d59c"
TEACHER = f"{SHARED}/reference/vdsr_reference_x234.npz#sha256={TEACHER_SHA256}"
FINETUNE = {"lr": 1e-4, "batch_size": 16, "steps_per_epoch": 100, "device": "cpu", "val_crop": 128}


def run_case(name: str, settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Compress with ``settings`` (over the benchmark's fine-tuning defaults), then score the model."""
    return score(name, CompressConfig.model_validate({"finetune": {**FINETUNE, "lr": args.lr}, **settings}), args)


def score(name: str, config: CompressConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Compress with ``config``, then score the model on the test sets; returns the table row."""
    teacher, digest = load_teacher(args.teacher, args.out / ".downloads")
    job = Job(teacher, args.teacher, digest, config, args.patches, args.out / name, val=args.val, progress=False)
    started = time.perf_counter()
    record = compress(job)
    seconds = time.perf_counter() - started
    predictor = load_predictor(args.out / name / "model.pt", device="cpu")
    scores = mean_scores(evaluate_folders(predictor, args.test, [2, 3, 4], progress=False))
    psnr = {f"{folder} {scale}": s.psnr for folder, by_scale in scores.items() for scale, s in by_scale.items()}
    print(f"{name}: {seconds:.0f} s, {psnr}", flush=True)
    last = record.history[-1]
    return {
        "name": name,
        "seconds": seconds,
        "parameters": record.parameters,
        "psnr": psnr,
        "settings": config.model_dump(mode="json", exclude_unset=True),
        "last_step": {"name": last.name, "kept": last.kept, "teacher_mse": last.teacher_mse, "val_psnr": last.val_psnr},
    }


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


def variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per value of ``--vary``, over the profile's compress block with ``--set`` applied."""
    return [score(name, config, args) for name, config in variant_configs(args)]


def variant_configs(args: argparse.Namespace) -> list[tuple[str, CompressConfig]]:
    """(row name, its compress config) for each value of ``--vary`` (one row without it): the
    config ``asymsr compress --params --teacher --steps`` would run, then ``--set``, then the value.

    Raises:
        ValueError: the profile or a setting fails the schema, or two rows have the same
            settings; the message names the row and the key.
    """
    stage_args = compress_stage.Args(
        params=args.params, teacher=args.teacher, steps=args.steps, patches=args.patches, out=args.out
    )
    base = compress_stage.config_of(stage_args).model_dump(mode="json", exclude_unset=True)
    for key, value in args.set:
        assign(base, key, value)
    key, values = args.vary or ("", [None])
    profile = load_params(args.params).profile
    configs: dict[str, CompressConfig] = {}
    for value in values:
        settings = json.loads(json.dumps(base))  # a deep copy per row
        if key:
            assign(settings, key, value)
        name = f"{key}={value}" if key else profile or "profile"
        try:
            config = CompressConfig.model_validate(settings)
        except ValidationError as error:
            raise ValueError(f"{name}: {problems(error)}") from error
        twin = next((other for other, known in configs.items() if known == config), None)
        if twin is not None:
            raise ValueError(f"--vary {key}: {value!r} gives the same settings as {twin}")
        configs[name] = config
    return list(configs.items())


def assign(block: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``block[a][b] = value`` for ``dotted`` = ``a.b``."""
    *parents, last = dotted.split(".")
    for part in parents:
        block = block.setdefault(part, {})
    block[last] = value


def setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, the value read as the profiles' YAML reads it: ``1e-4`` is a number)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, parse_yaml(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({' '.join(str(error).split())})") from None


def vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` -> (key, each value read as :func:`setting` reads one)."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=V1,V2,...")
    return key, [setting(f"{key}={value}")[1] for value in values.split(",")]


def step_figures(out: Path, row: dict[str, Any]) -> tuple[float | None, str, float | None]:
    """Of the last step tried: held-out PSNR against the teacher's output (dB), whether it was kept,
    and its validation PSNR (dB; None without --val). Rows of older runs keep these only in
    ``OUT/<row>/compression.json``, which a clone lacks: then (None, "-", None)."""
    record = out / row["name"] / "compression.json"
    last = row.get("last_step") or (json.loads(record.read_text())["history"][-1] if record.is_file() else None)
    if last is None:
        return None, "-", None
    verdict = f"{last['name']}: {'kept' if last['kept'] else 'not kept'}"
    return 10 * math.log10(1 / last["teacher_mse"]), verdict, last.get("val_psnr")


def table(rows: list[dict[str, Any]], out: Path, decimals: int = 2) -> str:
    cells = list(rows[0]["psnr"])
    figures = [step_figures(out, row) for row in rows]
    validated = all(val is not None for _, _, val in figures)
    header = ["model", "parameters", *cells, "time (s)", "last step vs teacher (dB)", "last step"]
    header += ["last step val PSNR (dB)"] if validated else []
    header += ["ms at 256", "vs VDSR"] if "latency_ms" in rows[0] else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, (to_teacher, verdict, val) in zip(rows, figures, strict=True):
        values = [row["name"], f"{row['parameters']:,}", *(f"{row['psnr'][cell]:.{decimals}f}" for cell in cells)]
        values += [f"{row['seconds']:.0f}", "-" if to_teacher is None else f"{to_teacher:.{decimals}f}", verdict]
        values += [f"{val:.3f}"] if validated else []
        if "latency_ms" in row:
            values += [f"{row['latency_ms']:.0f}", f"{row['latency_vs_teacher']:.2f}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write(out: Path, host: str, rows: list[dict[str, Any]], decimals: int = 2) -> None:
    text = f"{table(rows, out, decimals)}\n\n{host}\n"  # first: a table that fails to render writes nothing
    out.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"host": host, "decimals": decimals, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(text)
    print(text)


MODE_FLAGS = {  # flags that only some modes read, and their defaults there
    "lr": ({"ablation", "ranks"}, FINETUNE["lr"]),
    "sweeps": ({"ablation"}, 2),
    "rounds": ({"ranks"}, 5),
    "params": ({"variants"}, None),
    "vary": ({"variants"}, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "mode", choices=["ablation", "ranks", "variants", "table"], help="table: rewrite OUT.md from OUT.json"
    )
    parser.add_argument("--patches", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--teacher", help="default: the published VDSR (variants: the profile's compress.teacher, else it)"
    )
    parser.add_argument("--test", type=Path, action="append", help="test folder (repeatable; default Set5, Set14)")
    parser.add_argument("--val", type=Path, help="held-out HR images: each step's validation PSNR")
    parser.add_argument("--steps", type=int, help="distillation steps per case (default 300; variants: the profile's)")
    parser.add_argument("--rounds", type=int, help="latency rounds (ranks; default 5)")
    parser.add_argument("--lr", type=float, help="fine-tuning lr, Adam (ablation, ranks; default 1e-4)")
    parser.add_argument("--sweeps", type=int, help="refit_sweeps of the both-factors row (ablation; default 2)")
    parser.add_argument(
        "--no-finetune", dest="finetune", action="store_false", help="ablation: the closed-form and refit rows only"
    )
    parser.add_argument("--params", type=Path, help="variants: the profile whose compress block is varied")
    parser.add_argument("--set", type=setting, action="append", default=[], help="variants: KEY=VALUE in that block")
    parser.add_argument("--vary", type=vary, help="variants: KEY=V1,V2,... one row per value")
    args = parser.parse_args()
    if args.mode == "table":
        retable(parser, args.out)
        return
    args.test = args.test or [SHARED / "datasets" / "Set5", SHARED / "datasets" / "Set14"]
    check(parser, args)
    run = {"ablation": ablation, "ranks": ranks, "variants": variants}[args.mode]
    host = f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    write(args.out, host, run(args), decimals=3 if args.mode == "variants" else 2)


def retable(parser: argparse.ArgumentParser, out: Path) -> None:
    """Rewrite ``OUT.md`` from ``OUT.json``; print only, when the rows' step figures are gone."""
    try:
        saved = json.loads(out.with_suffix(".json").read_text())
        rows, host, decimals = saved["rows"], saved["host"], saved.get("decimals", 2)
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"{out.with_suffix('.json')}: not a table of this benchmark ({error})")
    text = f"{table(rows, out, decimals)}\n\n{host}\n"
    print(text)
    missing = [row["name"] for row in rows if step_figures(out, row)[0] is None]
    if missing:  # the committed OUT.md has them: keep it
        print(f"{out.with_suffix('.md')} left as it is: no last-step figures for {', '.join(missing)} "
              f"(older rows keep them in {out}/<row>/compression.json)", file=sys.stderr)  # fmt: skip
        return
    out.with_suffix(".md").write_text(text)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every input before any work, so that a bad flag costs nothing (argparse: one line, exit 2).
    Fills the mode's defaults and ``args.teacher``."""
    for flag, (modes, default) in MODE_FLAGS.items():
        given = getattr(args, flag)
        if given is not None and args.mode not in modes:
            parser.error(f"--{flag} is for {' and '.join(sorted(modes))}, not {args.mode}")
        setattr(args, flag, default if given is None else given)
    if args.mode != "variants" and args.set:
        parser.error(f"--set is for variants, not {args.mode}")
    if args.mode != "ablation" and not args.finetune:
        parser.error(f"--no-finetune is for ablation, not {args.mode}")
    if args.patches is None:
        parser.error(f"{args.mode} needs --patches")
    try:
        check_before_start(args.patches, args.out, resume=False)  # what `asymsr compress` refuses
    except (OSError, ValueError) as error:
        parser.error(f"--patches {args.patches}: {' '.join(str(error).split())}")
    for folder in [*args.test, *([args.val] if args.val else [])]:
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
    for flag, least in (("steps", 0), ("rounds", 1), ("sweeps", 0)):
        if getattr(args, flag) is not None and getattr(args, flag) < least:
            parser.error(f"--{flag} {getattr(args, flag)}: must be >= {least}")
    check_out(parser, args.out)
    if args.mode == "variants":
        if args.params is None:
            parser.error("variants needs --params")
        try:
            args.teacher = args.teacher or load_params(args.params).compress.teacher or TEACHER
            variant_configs(args)
        except Exception as error:  # the schema's own message names the key and the value
            parser.error(f"--params {args.params}: {' '.join(str(error).split())}")
    else:
        args.steps = 300 if args.steps is None else args.steps
    args.teacher = args.teacher or TEACHER
    try:
        load_teacher(args.teacher, args.out / ".downloads")
    except Exception as error:  # a missing file, a wrong hash, not a VDSR: one line either way
        parser.error(f"--teacher {args.teacher}: {' '.join(str(error).split())}")


def check_out(parser: argparse.ArgumentParser, out: Path) -> None:
    """``OUT/`` must be new; ``OUT.json``/``OUT.md`` may only be an earlier table of this benchmark."""
    if out.exists():  # its row folders would be overwritten, or mixed with another run's
        parser.error(f"--out {out}: exists; pick a new folder")
    try:
        earlier = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or (earlier and "rows" not in earlier):
        parser.error(f"{out.with_suffix('.json')}: exists and is not a table of this benchmark; pick another --out")
    if out.with_suffix(".md").exists() and not earlier:
        parser.error(f"{out.with_suffix('.md')}: exists without {out.with_suffix('.json')}; pick another --out")


if __name__ == "__main__":
    main()
