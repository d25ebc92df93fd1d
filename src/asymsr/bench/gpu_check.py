"""The library half of ``benchmarks/gpu_check.sh``: the CUDA check and the merge into one JSON.

The script runs ``asymsr bench --device cuda`` and short CUDA trainings through the CLI; this
module checks that CUDA is usable before any of that starts (``python -m asymsr.bench.gpu_check
check``, :func:`require_cuda`) and merges the benchmark record and the training run folders
into one record (``python -m asymsr.bench.gpu_check merge``, :func:`merge`)::

    {"host": {gpu, gpu_count, gpu_memory_bytes, driver, torch, cuda, cudnn, python, cpu_model,
              logical_cpus, datetime_utc},
     "bench": <the `asymsr bench` record>,
     "training_data": "<what the trainings were trained and validated on>",
     "training": [{profile, arch, device, epochs, steps, batch_size, patches, wall_s, train_s,
                   patches_per_s, patches_per_s_wall, final_loss, final_val_psnr_db}, ...]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from asymsr.bench.host import cpu_model
from asymsr.nn.checkpoint import CheckpointError, load_checkpoint
from asymsr.schema.records import TrainingHistory
from asymsr.util.fs import write_json


class NoCuda(RuntimeError):
    """CUDA cannot be used from this process; the message says why."""


@dataclass(frozen=True)
class TrainingRun:
    """One ``asymsr train`` run of the check, as the script timed it."""

    profile: str  # profiles/<profile>.yaml gave the schedule
    arch: str
    run_dir: Path  # `asymsr train --out`: checkpoint.pt and history.json
    wall_ms: int  # the whole `asymsr train` process, milliseconds


def require_cuda() -> str:
    """Describe CUDA device 0 as ``"<name> (torch <version>, CUDA <version>)"``.

    Raises:
        NoCuda: torch is a CPU-only build, or it sees no CUDA device.
    """
    if torch.version.cuda is None:
        raise NoCuda(
            f"no CUDA: torch {torch.__version__} is a CPU-only build; install a CUDA build "
            "(see TORCH_SPEC in the Makefile)"
        )
    if not torch.cuda.is_available():
        raise NoCuda(
            f"no CUDA: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no GPU; "
            "check the driver with nvidia-smi and CUDA_VISIBLE_DEVICES"
        )
    return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"


def driver_version() -> str | None:
    """The NVIDIA driver version that ``nvidia-smi`` reports, or None where it is absent or fails."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    return lines[0] if lines else None


def host_record() -> dict[str, Any]:
    """GPU 0 (name, count, memory in bytes), driver, torch, CUDA and cuDNN versions, CPU, UTC date-time.

    GPU fields are None (count 0) where CUDA is not available.
    """
    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None,
        "driver": driver_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def training_record(run: TrainingRun) -> dict[str, Any]:
    """Schedule, wall time (s), throughput (patches/s), final loss and validation PSNR (dB) of one run.

    ``train_s`` sums the epochs' training loops (validation and checkpoint writes excluded) and
    ``patches_per_s`` divides the patches trained by it; ``wall_s`` is the whole process as the
    script timed it (start-up, CUDA initialisation, data loading, validation and writes included).

    Raises:
        FileNotFoundError: the run folder lacks ``history.json``.
        RecordError: its ``history.json`` is not a :class:`~asymsr.schema.records.TrainingHistory`.
        CheckpointError: its ``checkpoint.pt`` is missing or not a training checkpoint.
    """
    history_path = run.run_dir / "history.json"
    if not history_path.is_file():
        raise FileNotFoundError(f"{run.profile}/{run.arch}: no history.json in {run.run_dir}")
    history = TrainingHistory.read(history_path).epochs
    config = load_checkpoint(run.run_dir / "checkpoint.pt").get("train_config")
    if not history or config is None:
        raise CheckpointError(f"{run.run_dir}: not a finished training run (no epochs or no train_config)")
    last = history[-1]
    patches = last.step * config["batch_size"]
    train_s = sum(record.seconds for record in history)
    wall_s = run.wall_ms / 1000.0
    return {
        "profile": run.profile,
        "arch": run.arch,
        "device": config["device"],
        "epochs": last.epoch,
        "steps": last.step,
        "batch_size": config["batch_size"],
        "patches": patches,
        "wall_s": wall_s,
        "train_s": train_s,
        "patches_per_s": patches / train_s,
        "patches_per_s_wall": patches / wall_s,
        "final_loss": last.loss,
        "final_val_psnr_db": last.val_psnr,
    }


def merge(bench: str | os.PathLike[str], runs: Sequence[TrainingRun], training_data: str) -> dict[str, Any]:
    """One record of the host, the ``asymsr bench`` JSON at ``bench`` and every training run.

    Raises:
        FileNotFoundError: ``bench`` or a run's files are missing.
        ValueError: ``bench`` is not an ``asymsr bench`` record.
    """
    bench = Path(bench)
    if not bench.is_file():
        raise FileNotFoundError(f"benchmark record not found: {bench}")
    record = json.loads(bench.read_text())
    if not isinstance(record, dict) or "cases" not in record:
        raise ValueError(f"{bench}: not an `asymsr bench` record (no 'cases')")
    return {
        "host": host_record(),
        "bench": record,
        "training_data": training_data,
        "training": [training_record(run) for run in runs],
    }


def _training_run(values: Sequence[str]) -> TrainingRun:
    profile, arch, run_dir, wall_ms = values
    try:
        milliseconds = int(wall_ms)
    except ValueError:
        raise ValueError(f"--train {' '.join(values)}: WALL_MS must be an integer, got {wall_ms!r}") from None
    return TrainingRun(profile, arch, Path(run_dir), milliseconds)


def build_parser() -> argparse.ArgumentParser:
    """``check`` and ``merge``, the two steps of ``benchmarks/gpu_check.sh`` that need Python."""
    parser = argparse.ArgumentParser(prog="python -m asymsr.bench.gpu_check", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("check", help="exit 1 with the reason unless CUDA is usable; print the GPU")
    merge_parser = steps.add_parser("merge", help="merge the benchmark and the training runs into one JSON")
    merge_parser.add_argument("--bench", required=True, help="JSON written by `asymsr bench --out PREFIX`")
    merge_parser.add_argument(
        "--train",
        nargs=4,
        action="append",
        default=[],
        metavar=("PROFILE", "ARCH", "RUN_DIR", "WALL_MS"),
        help="one timed `asymsr train` run (repeatable); WALL_MS is the process's wall time in milliseconds",
    )
    merge_parser.add_argument("--training-data", required=True, help="what the trainings used, in words")
    merge_parser.add_argument("--out", required=True, help="merged JSON (written atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; 0 on success, 1 without CUDA, 2 on bad inputs (one ``gpu_check:`` line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        if args.step == "check":
            print(require_cuda())
            return 0
        runs = [_training_run(values) for values in args.train]
        write_json(args.out, merge(args.bench, runs, args.training_data))
    except NoCuda as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as error:  # CheckpointError and RecordError are ValueErrors
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
