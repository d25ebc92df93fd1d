"""``asymsr train``: train one architecture on a patch folder (one process, or torchrun for several GPUs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from asymsr.schema.params import TrainConfig, TrainOverrides, given
from asymsr.schema.records import EpochRecord
from asymsr.stages._base import StageArgs, StageResult, arg, params_arg, read_params

NAME = "train"
HELP = "Train an architecture on a patch folder; writes checkpoint.pt, model.pt, history.json."


class Args(StageArgs):
    patches: Path = arg(..., "patch folder written by `asymsr prepare`")
    out: Path = arg(..., "run folder for checkpoints and history")
    val: Path | None = arg(None, "folder of held-out HR images for per-epoch validation PSNR")
    arch: str | None = arg(None, "architecture (with --params: picks its train block; default: vdsr)")
    config: Path | None = arg(None, "JSON file of training settings (e.g. tune's best_params.json); flags override it")
    settings: TrainOverrides = arg(TrainOverrides(), "", flatten=True)  # type: ignore[valid-type]
    resume: bool = arg(False, "continue from OUT/checkpoint.pt")
    resume_from_run: bool = arg(
        False,
        "mirror each epoch's checkpoint to the MLflow run, and continue from the one an earlier attempt "
        "mirrored there, if any (a retried Kubeflow task; needs a parent run)",
    )
    processes: int | Literal["auto"] = arg(
        1, "training processes on this node: N, or auto (one per visible GPU); more than 1 runs under torchrun"
    )
    parent_run_id: str | None = arg(
        None,
        "log each epoch live to MLflow, in this parent run's child for the architecture "
        "(default: $ASYMSR_PARENT_RUN_ID; none = no live logging)",
    )
    quiet: bool = arg(False, "no progress bars")
    params: Path | None = params_arg()

    @field_validator("processes", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value


class Result(StageResult):
    arch: str
    epochs: int
    steps: int
    loss: float
    val_psnr: float | None
    model: Path
    main_process: bool = True  # False on the other ranks under torchrun: they print nothing

    @classmethod
    def of(cls, arch: str, last: EpochRecord | None, out: Path, main_process: bool = True) -> Result:
        """The result of a run whose last epoch is ``last`` (None: no epochs) and whose folder is ``out``."""
        return cls(
            arch=arch,
            epochs=last.epoch if last else 0,
            steps=last.step if last else 0,
            loss=last.loss if last else float("nan"),
            val_psnr=last.val_psnr if last else None,
            model=out / "model.pt",
            main_process=main_process,
        )

    def describe(self) -> str:
        if not self.main_process:
            return ""
        if self.epochs == 0:
            return f"{self.arch}: no epochs; the initial weights written to {self.model}"
        shown = f", validation PSNR {self.val_psnr:.3f} dB" if self.val_psnr is not None else ""
        return (
            f"trained {self.arch} for {self.epochs} epochs ({self.steps} steps): final loss {self.loss:.6f}{shown}; "
            f"model written to {self.model}"
        )


def config_of(args: Args) -> TrainConfig:
    """--params' block of the architecture, then --config's JSON, then the flags."""
    params = read_params(args.params)
    values: dict[str, Any] = {}
    if params is not None:
        if args.arch is None:
            raise ValueError("--params needs --arch to pick the architecture's training block")
        values.update(params.train.config(args.arch).to_dict())
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"training config file not found: {args.config}")
        values.update(json.loads(args.config.read_text()))
    values.update(given(args.settings))
    if args.arch is not None:
        values["arch"] = args.arch
    return TrainConfig.model_validate(values)


def to_argv(args: Args) -> list[str]:
    """The ``asymsr train`` arguments that reproduce ``args`` (for the torchrun workers)."""
    argv = ["train", "--patches", str(args.patches), "--out", str(args.out), "--processes", "1"]
    for name in ("val", "arch", "config", "parent_run_id", "params"):
        value = getattr(args, name)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    for name, value in given(args.settings).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, "none" if value is None else str(value)]
    flags = (("--resume", args.resume), ("--resume-from-run", args.resume_from_run), ("--quiet", args.quiet))
    return argv + [flag for flag, on in flags if on]


def processes(args: Args) -> int:
    """How many training processes to start here (1 under torchrun: it has started them)."""
    from asymsr.training import distributed

    if distributed.torchrun_environment() is not None:
        return 1
    return max(1, distributed.visible_gpus()) if args.processes == "auto" else args.processes


def run(args: Args) -> Result:
    from asymsr.mlops.tracking import parent_run_id, restored_from_run
    from asymsr.training import distributed

    config = config_of(args)  # validated before any process starts
    if config.epochs == 0 and config.init is None:
        raise ValueError("--epochs 0 needs --init: without initial weights there would be nothing to write")
    if args.resume_from_run and distributed.torchrun_environment() is None:  # once, before any worker starts
        parent = parent_run_id(args.parent_run_id)
        restored = restored_from_run(NAME, parent, config.arch, args.out, RESUME_FILES)
        args = args.model_copy(update={"resume": args.resume or restored})
    count = processes(args)
    if count > 1:
        status = subprocess.run(distributed.torchrun_command(to_argv(args), count), check=False).returncode
        if status != 0:
            raise RuntimeError(f"torchrun with {count} processes failed with exit status {status}")
        return _result_from_outputs(config, args.out)
    return _train_here(args, config)


RESUME_FILES = ("checkpoint.pt",)  # what `train --resume` reads: the whole training state


def _train_here(args: Args, config: TrainConfig) -> Result:
    from contextlib import nullcontext

    from asymsr.mlops.tracking import live_training_log, parent_run_id
    from asymsr.training.distributed import is_main_process
    from asymsr.training.loop import train

    main_process = is_main_process()  # under torchrun, only rank 0 logs to MLflow and prints
    start = initial_weights(config, args.out)  # a bad --init fails before a run is opened
    parent = parent_run_id(args.parent_run_id) if main_process else None
    mirror = (args.out, RESUME_FILES) if args.resume_from_run else None
    logging = live_training_log(parent, config.arch, config.to_dict(), mirror) if parent else nullcontext(None)
    with logging as on_epoch_end:
        history = train(
            config,
            args.patches,
            args.out,
            val=args.val,
            resume=args.resume,
            progress=not args.quiet,
            on_epoch_end=on_epoch_end,
            start=start,
        )
    return Result.of(config.arch, history[-1] if history else None, args.out, main_process)


def initial_weights(config: TrainConfig, out: Path) -> dict[str, Any] | None:
    """The state dict of ``config.init`` (checked against its pin), or None for the seeded draw."""
    if config.init is None:
        return None
    from asymsr.mlops.loading import load_weights
    from asymsr.nn.models import build

    model, wanted = load_weights(config.init, out.parent / ".downloads"), build(config.arch, **config.arch_overrides)
    if model.config() != wanted.config():
        raise ValueError(f"init {config.init}: holds a {model.config()} network, {config.arch} needs {wanted.config()}")
    return model.state_dict()


def _result_from_outputs(config: TrainConfig, out: Path) -> Result:
    """The result of a torchrun training, read from the history its rank 0 wrote."""
    from asymsr.schema.records import TrainingHistory

    return Result.of(config.arch, TrainingHistory.read(out / "history.json").epochs[-1], out)
