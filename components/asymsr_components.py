"""Kubeflow Pipelines (v2) components of the asymsr pipeline: one per stage, all on one image.

Every body only moves artifact paths into ``asymsr`` library calls, the same functions that
the ``asymsr`` commands of ``dvc.yaml`` run, so no training, metric or data logic exists twice.
Artifacts are written exactly at ``artifact.path`` (a folder where the stage writes several
files) and carry metadata (architecture, parameters, PSNR, bytes) for the Kubeflow UI.

The image is ``$ASYMSR_IMAGE`` at compile time (default below); build it with ``make image``
(``components/Dockerfile``). Nothing is installed at run time: the image has the project.
"""

import os

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

IMAGE = os.environ.get("ASYMSR_IMAGE", "ghcr.io/asymsr/asymsr:0.1.0")


@dsl.component(base_image=IMAGE)
def resolve_params(profile: str, overrides_json: str, params: Output[Artifact]) -> str:
    """The run's params.yaml: a profile of the image with JSON overrides, validated. Returns the experiment."""
    import json

    from asymsr.params import resolve_profile

    resolved = resolve_profile(profile, json.loads(overrides_json or "{}"), params.path)
    params.metadata.update({"profile": resolved.profile, "datasets": sorted(resolved.datasets)})
    return resolved.registry.experiment


@dsl.component(base_image=IMAGE)
def start_tracking(params: Input[Artifact], mlflow_tracking_uri: str, run_name: str, run: Output[Artifact]) -> None:
    """Create the MLflow parent run of this pipeline run; ``run`` (tracking URI and run id) goes to every later step."""
    import os

    from asymsr import tracking
    from asymsr.params import load_params

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    resolved = load_params(params.path)
    client = tracking.connect()
    tags = {"profile": resolved.profile, "orchestrator": "kubeflow", "git_commit": "image"}
    parent = tracking.start_parent_run(client, resolved.registry.experiment, run_name, tags)
    tracking.write_run_context(run.path, parent)
    run.metadata.update({"parent_run_id": parent, "experiment": resolved.registry.experiment})


@dsl.component(base_image=IMAGE)
def tune_slots(architectures: list, count: int) -> list:
    """The architecture of every tune worker: each one ``count`` times (workers of one study are alike)."""
    if count < 1:
        raise ValueError(f"trial_parallelism must be >= 1, got {count}")
    return [arch for arch in architectures for _ in range(count)]


@dsl.component(base_image=IMAGE)
def fetch_and_validate(params: Input[Artifact], data: Output[Dataset], validation: Output[Artifact]) -> None:
    """Fetch every dataset of params into ``data/<name>`` and check it with Great Expectations."""
    from pathlib import Path

    from asymsr.params import load_params
    from asymsr.sources import fetch
    from asymsr.validation import raise_on_failure, validate_images

    resolved = load_params(params.path)
    reports = Path(validation.path)
    counts = {}
    for name, source in resolved.datasets.items():
        files = fetch(source, Path(data.path) / name)
        report = validate_images(
            Path(data.path) / name,
            expected_count=resolved.validation.expected_counts.get(name),
            min_size=resolved.validation.min_size,
        )
        report.write(reports / f"{name}.json", reports / f"{name}.html")
        raise_on_failure(report)
        counts[name] = len(files)
    data.metadata.update({"images": counts})


@dsl.component(base_image=IMAGE)
def prepare_patches(params: Input[Artifact], data: Input[Dataset], patches: Output[Dataset]) -> None:
    """Cut the training set into patches and validate them (``asymsr prepare`` + ``validate patches``)."""
    from pathlib import Path

    from asymsr.params import load_params
    from asymsr.prepare import prepare
    from asymsr.validation import raise_on_failure, validate_patches

    resolved = load_params(params.path)
    manifest = prepare([Path(data.path) / resolved.data.train], patches.path, resolved.prepare.config(workers=2))
    report = validate_patches(patches.path, sample=resolved.validation.patch_sample)
    report.write(Path(patches.path) / "validation.json", Path(patches.path) / "validation.html")
    raise_on_failure(report)
    patches.metadata.update({"patches": manifest["count"], "per_scale": manifest["counts_per_scale"]})


@dsl.component(base_image=IMAGE)
def tune(
    params: Input[Artifact],
    arch: str,
    patches: Input[Dataset],
    data: Input[Dataset],
    optuna_storage: str,
    n_trials: int,
    run: Input[Artifact],
    study: Output[Artifact],
    best: Output[Metrics],
) -> None:
    """Run trials of ``arch``'s study until it holds its budget (``asymsr tune``).

    Several of these share one study through ``optuna_storage``; run once more after them, it
    finds the budget complete and only writes the best parameters.
    """
    import json
    import os
    from pathlib import Path

    from asymsr.params import load_params
    from asymsr.tracking import use_run_context
    from asymsr.tuning import settings_from_params, tune

    parent_run_id = use_run_context(run.path)
    resolved = load_params(params.path)
    block = resolved.tune.model_dump()
    block["storage"] = optuna_storage or os.environ.get("OPTUNA_STORAGE") or block["storage"]
    block["trials"] = n_trials or block["trials"]
    summary = tune(
        arch,
        resolved.train.config(arch),
        settings_from_params(block, arch),
        patches.path,
        Path(data.path) / resolved.data.val,
        study.path,
        experiment=resolved.registry.experiment,
        parent_run_id=parent_run_id,
    )
    study.metadata.update({"arch": arch, "study": summary["study"], "best_params": json.dumps(summary["best_params"])})
    best.log_metric("best_val_psnr_db", summary["best_value_db"])
    best.log_metric("counted_trials", summary["counted"])


@dsl.component(base_image=IMAGE)
def train(
    params: Input[Artifact],
    arch: str,
    patches: Input[Dataset],
    data: Input[Dataset],
    study: Input[Artifact],
    run: Input[Artifact],
    model: Output[Model],
) -> None:
    """Train ``arch`` with the study's best parameters (``asymsr train --config best_params.json``).

    With several GPUs visible it runs one process per GPU under torchrun (DistributedDataParallel).
    """
    from pathlib import Path

    from asymsr.launch import run_cli
    from asymsr.params import load_params
    from asymsr.tracking import use_run_context

    parent_run_id = use_run_context(run.path)
    resolved = load_params(params.path)
    argv = ["train", "--params", params.path, "--arch", arch, "--config", str(Path(study.path) / "best_params.json")]
    argv += ["--patches", patches.path, "--val", str(Path(data.path) / resolved.data.val), "--out", model.path]
    argv += ["--quiet", "--parent-run-id", parent_run_id]
    run_cli(argv)
    model.metadata.update(
        {"arch": arch, "framework": "pytorch", "bytes": (Path(model.path) / "model.pt").stat().st_size}
    )


@dsl.component(base_image=IMAGE)
def evaluate_model(
    params: Input[Artifact],
    arch: str,
    data: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    scores: Output[Metrics],
    table: Output[Markdown],
) -> None:
    """PSNR/SSIM on the test sets plus efficiency figures (``asymsr evaluate``)."""
    from pathlib import Path

    from asymsr.evaluation import evaluate_test_sets
    from asymsr.tracking import evaluation_metrics

    out = Path(evaluation.path) / f"{arch}.json"
    summary = evaluate_test_sets(params.path, Path(model.path) / "model.pt", data.path, out)
    for key, value in evaluation_metrics(summary).items():
        scores.log_metric(key, value)
    evaluation.metadata.update({"label": arch})
    Path(table.path).write_text(out.with_suffix(".md").read_text())


@dsl.component(base_image=IMAGE)
def evaluate_bicubic(
    params: Input[Artifact], data: Input[Dataset], evaluation: Output[Artifact], table: Output[Markdown]
) -> None:
    """The bicubic baseline through the same evaluation path (``asymsr evaluate --model bicubic``)."""
    from pathlib import Path

    from asymsr.evaluation import evaluate_test_sets

    out = Path(evaluation.path) / "bicubic.json"
    evaluate_test_sets(params.path, "bicubic", data.path, out)
    evaluation.metadata.update({"label": "bicubic"})
    Path(table.path).write_text(out.with_suffix(".md").read_text())


@dsl.component(base_image=IMAGE)
def register(
    params: Input[Artifact],
    data: Input[Dataset],
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    studies: Input[list[Artifact]],
    baseline: Input[Artifact],
    run: Input[Artifact],
    max_psnr_drop: float,
    use_stages: bool,
    report: Output[Markdown],
    decision: Output[Metrics],
) -> str:
    """Comparison report and plots, then ``asymsr register``: log, register, apply the gate. Returns the decision."""
    import json
    import tempfile
    from pathlib import Path

    from asymsr import tracking
    from asymsr.params import load_params
    from asymsr.plots import report_plots
    from asymsr.registry import ArchOutputs, RegisterSettings, register_pipeline
    from asymsr.report import comparison_report, load_summary

    parent_run_id = tracking.use_run_context(run.path)
    resolved = load_params(params.path)
    by_label = {item.metadata["label"]: Path(item.path) / f"{item.metadata['label']}.json" for item in evaluations}
    model_dirs = {item.metadata["arch"]: Path(item.path) for item in models}
    study_files = {item.metadata["arch"]: Path(item.path) / "study.json" for item in studies}
    summaries = {"bicubic": load_summary(Path(baseline.path) / "bicubic.json")}
    summaries.update({arch: load_summary(by_label[arch]) for arch in model_dirs})
    work = Path(tempfile.mkdtemp(prefix="asymsr-register-"))
    plots = report_plots(summaries, work / "plots")
    text = comparison_report(summaries, {caption: f"plots/{path.name}" for caption, path in plots.items()})
    Path(report.path).write_text(text)
    settings = RegisterSettings(
        **{**resolved.registry.model_dump(), "max_psnr_drop": max_psnr_drop, "use_stages": use_stages}
    )
    record = register_pipeline(
        [ArchOutputs(arch, model_dirs[arch], by_label[arch], study_files.get(arch)) for arch in model_dirs],
        settings,
        [Path(data.path) / name for name in resolved.data.test],
        resolved.evaluate.scales,
        work / "registry.json",
        params=resolved.model_dump(by_alias=True),
        reports=[report.path, *plots.values()],
        parent_run_id=parent_run_id,
        tags={"profile": resolved.profile, "orchestrator": "kubeflow"},
    )
    decision.log_metric("promoted", 1.0 if record["decision"]["label"] == "promoted" else 0.0)
    decision.log_metric("psnr_drop_db", record["decision"]["figures"]["psnr_drop_db"])
    decision.metadata.update({"versions": json.dumps(record["versions"]), "reason": record["decision"]["reason"]})
    tracking.finish(tracking.connect(), parent_run_id)
    return record["decision"]["label"]
