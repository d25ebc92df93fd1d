"""Kubeflow Pipelines (v2) components of the asymsr pipeline: one per stage, all on one image.

Every body builds the stage's ``Args`` from its artifact paths and calls the stage's ``run``:
the function that ``asymsr <stage>`` (and so ``dvc.yaml``) runs, in :mod:`asymsr.stages`.
Nothing else happens in a body but naming paths and copying the typed result into artifact
metadata for the Kubeflow UI; so the three ways to run the pipeline cannot drift.

These are lightweight Python components on the project's image rather than container
components, because ``kfp.local``'s SubprocessRunner (the local run in CI, where no Docker
engine runs) refuses container components.

The image is ``$ASYMSR_IMAGE`` at compile time (default below); build it with ``make image``
(``components/Dockerfile``). Nothing is installed at run time: the image has the project.
"""

import functools
import os

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

IMAGE = os.environ.get("ASYMSR_IMAGE", "ghcr.io/asymsr/asymsr:0.1.0")
# The image already holds kfp (the `kubeflow` extra): without install_kfp_package=False every task
# would start with `pip install kfp==<compiler's version>`, which needs PyPI from the node and
# minutes, and fails on an air-gapped cluster.
component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)


@component
def resolve_params(profile: str, overrides_json: str, params: Output[Artifact]) -> str:
    """The run's params.yaml: a profile of the image with JSON overrides, validated (``asymsr profile``)."""
    from asymsr.stages import profile as stage

    result = stage.run(stage.Args(name=profile, overrides=overrides_json or "{}", target=params.path))
    params.metadata.update({"profile": profile, "experiment": result.experiment})
    return result.experiment


@component
def start_tracking(params: Input[Artifact], mlflow_tracking_uri: str, run_name: str, run: Output[Artifact]) -> None:
    """The MLflow parent run of this pipeline run (``asymsr start-run``); ``run`` goes to every later step."""
    from asymsr.stages import start_run as stage

    args = stage.Args(
        params=params.path,
        run_name=run_name,
        out=run.path,
        tracking_uri=mlflow_tracking_uri or None,
        tag=["orchestrator=kubeflow", "git_commit=image"],
    )
    result = stage.run(args)
    run.metadata.update({"parent_run_id": result.parent_run_id, "experiment": result.experiment})


@component
def tune_slots(architectures: list, count: int) -> list:
    """The architecture of every tune worker: each one ``count`` times (workers of one study are alike)."""
    if count < 1:
        raise ValueError(f"trial_parallelism must be >= 1, got {count}")
    return [arch for arch in architectures for _ in range(count)]


@component
def fetch_and_validate(params: Input[Artifact], data: Output[Dataset], validation: Output[Artifact]) -> None:
    """Every dataset of params into ``data/<name>``, each checked (``asymsr fetch`` + ``asymsr validate images``)."""
    from pathlib import Path

    from asymsr.schema.params import load_params
    from asymsr.stages import fetch, validate

    counts = {}
    for name in load_params(params.path).datasets:
        folder = Path(data.path) / name
        fetched = fetch.run(fetch.Args(dataset=name, params=params.path, out=folder))
        validate.run(validate.Args(kind="images", folder=folder, params=params.path, out=Path(validation.path) / name))
        counts[name] = fetched.files
    data.metadata.update({"images": counts})


@component
def prepare_patches(params: Input[Artifact], data: Input[Dataset], patches: Output[Dataset]) -> None:
    """Cut the training set into patches and validate them (``asymsr prepare`` + ``asymsr validate patches``)."""
    from pathlib import Path

    from asymsr.schema.params import load_params
    from asymsr.stages import prepare, validate

    train_set = Path(data.path) / load_params(params.path).data.train
    result = prepare.run(prepare.Args(images=[train_set], out=patches.path, params=params.path, quiet=True))
    report = Path(patches.path) / "validation"
    validate.run(validate.Args(kind="patches", folder=patches.path, params=params.path, out=report))
    patches.metadata.update({"patches": result.count, "per_scale": result.counts_per_scale})


@component
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

    from asymsr.mlops.tracking import use_run_context
    from asymsr.schema.params import load_params
    from asymsr.stages import tune as stage

    parent = use_run_context(run.path)
    args = stage.Args(
        params=params.path,
        arch=arch,
        patches=patches.path,
        val=Path(data.path) / load_params(params.path).data.val,
        out=study.path,
        storage=optuna_storage or os.environ.get("OPTUNA_STORAGE") or None,
        trials=n_trials or None,
        parent_run_id=parent,
    )
    summary = stage.run(args).study
    study.metadata.update({"arch": arch, "study": summary.study, "best_params": json.dumps(summary.best_params)})
    best.log_metric("best_val_psnr_db", summary.best_value_db)
    best.log_metric("counted_trials", summary.counted)


@component
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

    With several GPUs visible it runs one process per GPU under torchrun (``--processes auto``).
    """
    from pathlib import Path

    from asymsr.mlops.tracking import use_run_context
    from asymsr.schema.params import load_params
    from asymsr.stages import train as stage

    parent = use_run_context(run.path)
    args = stage.Args(
        params=params.path,
        arch=arch,
        config=Path(study.path) / "best_params.json",
        patches=patches.path,
        val=Path(data.path) / load_params(params.path).data.val,
        out=model.path,
        processes="auto",
        parent_run_id=parent,
        resume_from_run=True,  # a retry after a lost node continues from the last epoch
        quiet=True,
    )
    result = stage.run(args)
    model.metadata.update({"arch": arch, "framework": "pytorch", "bytes": result.model.stat().st_size})


@component
def compress(
    params: Input[Artifact],
    models: Input[list[Model]],
    patches: Input[Dataset],
    data: Input[Dataset],
    run: Input[Artifact],
    model: Output[Model],
) -> None:
    """The trained VDSR -> an Asym_VDSR (``asymsr compress --teacher models/vdsr/model.pt``, as ``dvc.yaml``)."""
    from pathlib import Path

    from asymsr.mlops.tracking import use_run_context
    from asymsr.schema.params import load_params
    from asymsr.stages import compress as stage

    settings = load_params(params.path)
    reference = settings.registry.reference
    teachers = [item for item in models if item.metadata["arch"] == reference]
    if len(teachers) != 1:
        raise ValueError(
            f"compress: needs the trained {reference!r} among the models, got {[m.metadata['arch'] for m in models]}"
        )
    args = stage.Args(
        params=params.path,
        teacher=str(Path(teachers[0].path) / "model.pt"),
        patches=patches.path,
        val=Path(data.path) / settings.data.val,
        out=model.path,
        parent_run_id=use_run_context(run.path),
        run_name="asym_vdsr_compressed",  # the artifact's folder has a generated name
        resume_from_run=True,  # a retry after a lost node continues from the last epoch
        quiet=True,
    )
    result = stage.run(args)
    model.metadata.update(
        {
            "arch": "asym_vdsr_compressed",
            "framework": "pytorch",
            "bytes": result.model.stat().st_size,
            "rank": result.record.rank,
        }
    )


@component
def evaluate_model(
    params: Input[Artifact],
    arch: str,
    data: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    scores: Output[Metrics],
    table: Output[Markdown],
) -> None:
    """PSNR/SSIM on the test sets plus efficiency figures (``asymsr evaluate --params --data-root``)."""
    from pathlib import Path

    from asymsr.mlops.tracking import evaluation_metrics
    from asymsr.stages import evaluate as stage

    out = Path(evaluation.path) / f"{arch}.json"
    checkpoint = str(Path(model.path) / "model.pt")
    args = stage.Args(params=params.path, model=checkpoint, data_root=data.path, out=out, quiet=True)
    summary = stage.run(args).summary
    for key, value in evaluation_metrics(summary).items():
        scores.log_metric(key, value)
    evaluation.metadata.update({"label": arch})
    Path(table.path).write_text(out.with_suffix(".md").read_text())


@component
def evaluate_bicubic(
    params: Input[Artifact], data: Input[Dataset], evaluation: Output[Artifact], table: Output[Markdown]
) -> None:
    """The bicubic baseline through the same stage (``asymsr evaluate --model bicubic``)."""
    from pathlib import Path

    from asymsr.stages import evaluate as stage

    out = Path(evaluation.path) / "bicubic.json"
    stage.run(stage.Args(params=params.path, model="bicubic", data_root=data.path, out=out, quiet=True))
    evaluation.metadata.update({"label": "bicubic"})
    Path(table.path).write_text(out.with_suffix(".md").read_text())


@component
def report(
    params: Input[Artifact],
    data: Input[Dataset],
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    baseline: Input[Artifact],
    compressed: Input[Model],
    compressed_evaluation: Input[Artifact],
    comparison: Output[Artifact],
    table: Output[Markdown],
) -> None:
    """The comparison report, its plots and the x4 crops (``asymsr report``, as ``dvc.yaml`` runs it)."""
    from pathlib import Path

    from asymsr.schema.params import load_params
    from asymsr.stages import report as stage

    runs = [*models, compressed]
    archs = [item.metadata["arch"] for item in runs]
    metrics = {
        item.metadata["label"]: Path(item.path) / f"{item.metadata['label']}.json"
        for item in [*evaluations, compressed_evaluation]
    }
    metrics["bicubic"] = Path(baseline.path) / "bicubic.json"
    labels = ["bicubic", *archs]
    visual = ["bicubic=bicubic", *(f"{item.metadata['arch']}={Path(item.path) / 'model.pt'}" for item in runs)]
    out = Path(comparison.path)
    args = stage.Args(
        metrics=[metrics[label] for label in labels],
        labels=labels,
        out=out / "results.md",
        plot_out=out / "psnr_gain.json",
        plots_dir=out / "plots",
        visual_images=Path(data.path) / load_params(params.path).data.test[0],
        visual_model=visual,
        device="cpu",
    )
    result = stage.run(args)
    Path(table.path).write_text(result.table)
    comparison.metadata.update({"files": [str(path.relative_to(out)) for path in result.written]})


@component
def register(
    params: Input[Artifact],
    data: Input[Dataset],
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    studies: Input[list[Artifact]],
    compressed: Input[Model],
    compressed_evaluation: Input[Artifact],
    comparison: Input[Artifact],
    run: Input[Artifact],
    decision: Output[Metrics],
) -> str:
    """``asymsr register``: log, register, apply the gate of the profile's ``register`` block. Returns the decision."""
    import json
    import tempfile
    from pathlib import Path

    from asymsr.mlops.tracking import use_run_context
    from asymsr.stages import register as stage

    parent = use_run_context(run.path)
    # the stage reads <models>/<arch>/, <metrics>/<arch>.json and <tune>/<arch>/study.json: link the artifacts so
    # (a folder of links; removed afterwards: the links point into the artifacts, which stay)
    with tempfile.TemporaryDirectory(prefix="asymsr-register-") as folder:
        layout = Path(folder)
        for item in [*models, compressed]:
            (layout / "models").mkdir(exist_ok=True)
            (layout / "models" / item.metadata["arch"]).symlink_to(item.path)
        for item in [*evaluations, compressed_evaluation]:
            (layout / "metrics").mkdir(exist_ok=True)
            for source in Path(item.path).iterdir():
                (layout / "metrics" / source.name).symlink_to(source)
        for item in studies:
            (layout / "tune").mkdir(exist_ok=True)
            (layout / "tune" / item.metadata["arch"]).symlink_to(item.path)
        reports = sorted(path for path in Path(comparison.path).rglob("*") if path.suffix in (".md", ".png"))
        args = stage.Args(
            params=params.path,
            models_root=layout / "models",
            metrics_root=layout / "metrics",
            tune_root=layout / "tune",
            data_root=data.path,
            report=reports,
            out=layout / "registry.json",
            parent_run_id=parent,
            finish_parent=True,
            tag=["orchestrator=kubeflow"],
        )
        record = stage.run(args).record
    decision.log_metric("promoted", 1.0 if record.decision.promote else 0.0)
    decision.log_metric("psnr_drop_db", record.decision.figures.psnr_drop_db)
    judged = {"candidate_run": record.candidate_run or ""}
    decision.metadata.update({"versions": json.dumps(record.versions), "reason": record.decision.reason, **judged})
    return record.decision.label
