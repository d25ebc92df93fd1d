"""``asymsr register``: log the pipeline run to MLflow, register both models, apply the promotion gate."""

from __future__ import annotations

from pathlib import Path

from asymsr.schema.records import RegistryRecord
from asymsr.stages._base import StageArgs, StageResult, arg, params_arg, parse_pairs

NAME = "register"
HELP = (
    "Log the pipeline run to MLflow, register its models and apply the promotion gate to the best candidate "
    "(needs --params)."
)


class Args(StageArgs):
    models_root: Path = arg(Path("models"), "folder of <run>/ folders (the reference and register.candidate_runs)")
    metrics_root: Path = arg(Path("metrics"), "folder of <run>.json summaries")
    tune_root: Path = arg(Path("reports/tune"), "folder of <arch>/study.json from `asymsr tune`, if tuned")
    data_root: Path = arg(..., "folder of the data.test datasets (to re-evaluate an older champion)")
    report: list[Path] = arg([], "file to log on the parent run (repeatable): report, plots", repeat=True)
    out: Path = arg(..., "JSON record of the versions and the decision")
    parent_run_id: str | None = arg(None, "attach to this MLflow run (default: $ASYMSR_PARENT_RUN_ID, else a new one)")
    finish_parent: bool = arg(False, "end the given parent run as FINISHED afterwards (the pipeline's last step)")
    data_hash_of: str = arg("data/patches", "dvc.lock output whose hash is tagged as the data version")
    tag: list[str] = arg(
        [], "extra tag KEY=VALUE on every run and version (repeatable)", repeat=True, metavar="KEY=VALUE"
    )
    params: Path = params_arg(required=True)


class Result(StageResult):
    record: RegistryRecord
    candidate: str
    out: Path

    def describe(self) -> str:
        record = self.record
        versions = ", ".join(f"{run} v{version}" for run, version in record.versions.items())
        lines = [f"already registered with these inputs ({versions}); nothing changed"] if record.unchanged else []
        judged = record.candidate_run or self.candidate
        lines += [
            f"{self.candidate} (from {judged}): {record.decision.label}: {record.decision.reason}",
            f"registered {versions}; parent run {record.parent_run_id}; record written to {self.out}",
        ]
        return "\n".join(lines)


def run(args: Args) -> Result:
    from asymsr.mlops import tracking
    from asymsr.mlops.registry import ArchOutputs, register_pipeline
    from asymsr.schema.params import load_params

    params = load_params(args.params)
    settings = params.registry
    outputs = []
    runs = {settings.reference: settings.reference, **dict.fromkeys(settings.runs(), settings.candidate)}
    for name, arch in runs.items():
        study = args.tune_root / name / "study.json"
        tuning = study if study.is_file() else None
        outputs.append(ArchOutputs(arch, args.models_root / name, args.metrics_root / f"{name}.json", tuning, name))
    tags = {
        "git_commit": tracking.git_commit(),
        "dvc_data_hash": tracking.dvc_data_hash(args.data_hash_of),
        "profile": params.profile,
        **parse_pairs(args.tag, "--tag"),
    }
    parent = tracking.parent_run_id(args.parent_run_id)
    record = register_pipeline(
        outputs,
        settings,
        params.test_folders(args.data_root),
        params.evaluate.scales,
        args.out,
        params=params.model_dump(mode="json", by_alias=True),
        reports=args.report,
        parent_run_id=parent,
        tags=tags,
    )
    if args.finish_parent and parent:
        tracking.finish(tracking.connect(), parent)
    return Result(record=record, candidate=settings.candidate, out=args.out)
