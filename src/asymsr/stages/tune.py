"""``asymsr tune``: an Optuna study of one architecture's training settings (resumable, parallel)."""

from __future__ import annotations

from pathlib import Path

from asymsr.schema.params import TuneConfig
from asymsr.schema.records import StudySummary
from asymsr.stages._base import StageArgs, StageResult, arg, params_arg

NAME = "tune"
HELP = "Search an architecture's training hyper-parameters with Optuna (resumable; parallel workers share the study)."


class Args(StageArgs):
    arch: str = arg(..., "architecture whose study to run")
    patches: Path = arg(..., "patch folder written by `asymsr prepare`")
    val: Path = arg(..., "validation images: the objective (never a test set)")
    out: Path = arg(..., "folder for best_params.json, study.json and the plots")
    workers: int | None = arg(None, "worker processes here (default: tune.workers)")
    trials: int | None = arg(None, "counted trials in the study (default: tune.trials)")
    timeout_s: float | None = arg(None, "stop starting trials after this many seconds (default: tune.timeout_s)")
    storage: str | None = arg(
        None, "SQLAlchemy URL of the study storage, e.g. postgresql://... (default: tune.storage)"
    )
    parent_run_id: str | None = arg(None, "nest the trials under this MLflow run's architecture run")
    params: Path = params_arg(required=True)


class Result(StageResult):
    study: StudySummary
    out: Path

    def describe(self) -> str:
        study = self.study
        states = ", ".join(f"{count} {state.lower()}" for state, count in study.states.items())
        return (
            f"study {study.study}: {study.counted} of {study.trials} trials ({states}); "
            f"best trial {study.best_trial}: validation PSNR {study.best_value_db:.3f} dB with "
            f"{study.best_params}; written to {self.out / 'best_params.json'}"
        )


def settings_of(args: Args, block: TuneConfig) -> TuneConfig:
    """The ``tune`` block with the flags' overrides, validated again."""
    values = block.model_dump()
    for key in ("trials", "storage", "timeout_s", "workers"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return TuneConfig.model_validate(values)


def run(args: Args) -> Result:
    from asymsr.mlops.tracking import parent_run_id
    from asymsr.schema.params import load_params
    from asymsr.training.tuning import tune

    params = load_params(args.params)
    settings = settings_of(args, params.tune)
    summary = tune(
        args.arch,
        params.train.config(args.arch),
        settings,
        args.patches,
        args.val,
        args.out,
        workers=settings.workers,
        experiment=params.registry.experiment,
        parent_run_id=parent_run_id(args.parent_run_id),
    )
    return Result(study=summary, out=args.out)
