"""``asymsr compress``: a trained VDSR in, an Asym_VDSR out (closed form, refit, distillation)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from asymsr.schema.params import CompressConfig
from asymsr.schema.records import CompressionRecord
from asymsr.stages._base import StageArgs, StageResult, arg, default_of, params_arg, read_params

NAME = "compress"
HELP = "Compress a trained VDSR into an Asym_VDSR; writes model.pt, compression.json (and checkpoint.pt, history.json)."


class Args(StageArgs):
    teacher: str | None = arg(
        None,
        "the VDSR: a checkpoint (.pt), an .npz of import-weights' layout, a models:/ URI, or a path or https "
        "URL pinned as #sha256=<hex> (default: compress.teacher of --params)",
    )
    patches: Path = arg(..., "patch folder written by `asymsr prepare` (refit and fine-tuning data)")
    out: Path = arg(..., "run folder for model.pt, compression.json, checkpoints and history")
    val: Path | None = arg(None, "folder of held-out HR images: validation PSNR after each step and epoch")
    rank: int | None = arg(
        None, f"width between each pair's 3x1 and 1x3 (default: {default_of(CompressConfig, 'rank')})", ge=1
    )
    steps: int | None = arg(
        None,
        f"fine-tuning steps; 0 = closed form (and refit) only (default: {default_of(CompressConfig, 'steps')})",
        ge=0,
    )
    refit: bool | None = arg(None, "data-aware refit of the 1x3 factors, kept only if better (default: on)")
    device: str | None = arg(None, "auto, cpu, cuda, cuda:N (default: compress.finetune.device, else auto)")
    resume: bool = arg(False, "continue the fine-tuning from OUT/checkpoint.pt")
    resume_from_run: bool = arg(
        False,
        "mirror each epoch's checkpoint to the MLflow run, and continue from the one an earlier attempt "
        "mirrored there, if any (a retried Kubeflow task; needs a parent run)",
    )
    parent_run_id: str | None = arg(
        None,
        "log each epoch live to MLflow, in this parent run's child (default: $ASYMSR_PARENT_RUN_ID; none = no logging)",
    )
    run_name: str | None = arg(None, "the MLflow child run's name (default: OUT's folder name, as `register` names it)")
    quiet: bool = arg(False, "no progress bars")
    params: Path | None = params_arg()


class Result(StageResult):
    record: CompressionRecord
    model: Path

    def describe(self) -> str:
        record = self.record
        lines = [
            f"compressed {record.teacher} (rank {record.rank}): {record.parameters:,} parameters, "
            f"{record.parameters / record.teacher_parameters:.1%} of the teacher's; model written to {self.model}"
        ]
        for step in record.history:
            psnr = f"val PSNR {step.val_psnr:.3f} dB, " if step.val_psnr is not None else ""
            kept = "" if step.kept else " (not kept)"
            lines.append(
                f"  {step.name:<12} {psnr}output MSE to the teacher {step.teacher_mse:.3e}, {step.seconds:.0f} s{kept}"
            )
        return "\n".join(lines)


def config_of(args: Args) -> CompressConfig:
    """``compress`` of --params (or the defaults), then the flags."""
    params = read_params(args.params)
    values: dict[str, Any] = params.compress.model_dump(mode="json", exclude_unset=True) if params else {}
    values.update(
        {name: getattr(args, name) for name in ("teacher", "rank", "steps", "refit") if getattr(args, name) is not None}
    )
    if args.device is not None:
        values["finetune"] = {**values.get("finetune", {}), "device": args.device}
    config = CompressConfig.model_validate(values)
    if config.teacher is None:
        raise ValueError("--teacher: no teacher given (and no compress.teacher in --params)")
    return config


def check_inputs(args: Args, config: CompressConfig, channels: int) -> None:
    """The flags that the work would otherwise trip over halfway, each named."""
    from asymsr.training.compression import check_before_start

    if config.rank > channels:
        raise ValueError(f"--rank: {config.rank} exceeds the teacher's {channels} channels")
    if args.val is not None and not args.val.is_dir():
        raise FileNotFoundError(f"--val: no such folder: {args.val}")
    try:
        check_before_start(args.patches, args.out, args.resume)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--resume: {error}") from None
    except ValueError as error:
        raise ValueError(f"--patches: {error}") from None


def resume_files() -> tuple[str, ...]:
    """What ``compress --resume`` reads: the fine-tuning state, the record of steps 1-2, their student."""
    from asymsr.training.compression import RECORD, START

    return ("checkpoint.pt", RECORD, START)


def run(args: Args) -> Result:
    from asymsr.mlops.loading import load_teacher
    from asymsr.mlops.tracking import live_training_log, parent_run_id, restored_from_run
    from asymsr.training.compression import Job, compress

    config = config_of(args)
    teacher, digest = load_teacher(config.teacher, args.out.parent / ".downloads")  # type: ignore[arg-type]
    parent = parent_run_id(args.parent_run_id)
    name = args.run_name or args.out.name  # `asymsr register` names the run after its folder
    if args.resume_from_run:
        restored = restored_from_run(NAME, parent, name, args.out, resume_files())
        args = args.model_copy(update={"resume": args.resume or restored})
    check_inputs(args, config, teacher.channels)  # before anything is written or logged
    job = Job(teacher, config.teacher, digest, config, args.patches, args.out, args.val, progress=not args.quiet)  # type: ignore[arg-type]
    origin = {"origin": "compressed", "teacher": config.teacher, "rank": config.rank}
    mirror = (args.out, resume_files()) if args.resume_from_run else None
    finetune = {**job.finetune.to_dict(), **origin}
    logging = live_training_log(parent, name, finetune, mirror) if parent else nullcontext(None)
    with logging as on_epoch_end:
        job.on_epoch_end = on_epoch_end
        record = compress(job, resume=args.resume)
    return Result(record=record, model=args.out / "model.pt")
