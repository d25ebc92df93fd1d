"""``asymsr register``: record a pipeline run in MLflow, register both models, apply the gate.

What one call does, in this order (see :mod:`asymsr.tracking` for names and layout):

1. attach to the parent run it is given, or create one;
2. per architecture, in its child run: the resolved training config as parameters, the
   per-epoch curves (unless already logged live), the evaluation and efficiency metrics,
   the tags, the artifacts (checkpoints, history, evaluation tables, model-size report) and
   the MLflow model;
3. on the parent: the pipeline parameters and the comparison report with its plots;
4. only when all of that succeeded: one new registry version per architecture;
5. the promotion gate (:mod:`asymsr.promotion`) on the candidate version, recorded as tags
   on the version and on the runs, and as aliases ``champion`` / ``challenger`` (plus the
   ``Production`` / ``Archived`` stages when ``use_stages`` is on).

Idempotent: the inputs' fingerprint (model and metrics files, settings, evaluation data) is
a tag of every version it registers; a second call with the same inputs finds the versions
and changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asymsr import tracking
from asymsr.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.efficiency import model_size_report
from asymsr.fsutil import write_json
from asymsr.images import list_images
from asymsr.promotion import Decision, Figures, decide
from asymsr.report import load_summary
from asymsr.sources import sha256_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

FINGERPRINT_TAG = "asymsr.fingerprint"
EVAL_FINGERPRINT_TAG = "asymsr.eval_fingerprint"
DECISION_TAG = "decision"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RegisterSettings:
    """Where to record and how to judge (the ``register`` block of params.yaml).

    Attributes:
        experiment: MLflow experiment of the pipeline runs.
        candidate: architecture that competes for ``champion``.
        reference: architecture it is compared with in the same run.
        max_psnr_drop: largest allowed mean-PSNR drop below the reference, dB (>= 0).
        use_stages: also move versions through the deprecated registry stages
            (promoted -> ``Production``, the previous one -> ``Archived``).
    """

    experiment: str = tracking.DEFAULT_EXPERIMENT
    candidate: str = "asym_vdsr"
    reference: str = "vdsr"
    max_psnr_drop: float = 0.2
    use_stages: bool = False


@dataclass(frozen=True)
class ArchOutputs:
    """What the pipeline produced for one architecture."""

    arch: str
    run_dir: Path  # `asymsr train --out`: model.pt, checkpoint.pt, history.json
    metrics: Path  # `asymsr evaluate --out`: summary JSON; <stem>.per_image.json and <stem>.md beside it
    tuning: Path | None = None  # `asymsr tune --out` study.json, when the run was tuned

    def files(self) -> dict[str, Path]:
        """Every input file by role; all must exist."""
        stem = self.metrics.stem
        return {
            "model": self.run_dir / "model.pt",
            "checkpoint": self.run_dir / "checkpoint.pt",
            "history": self.run_dir / "history.json",
            "metrics": self.metrics,
            "per_image": self.metrics.with_name(f"{stem}.per_image.json"),
            "table": self.metrics.with_name(f"{stem}.md"),
        }


def mean_psnr(summary: Mapping[str, Any]) -> float:
    """Mean PSNR (dB) over every dataset and scale of an ``asymsr evaluate`` summary."""
    return tracking.evaluation_metrics(summary)["mean_psnr"]


def evaluation_fingerprint(folders: Sequence[str | os.PathLike[str]], scales: Sequence[int]) -> str:
    """SHA-256 over the test images' names and contents and the scales: "the same evaluation data"."""
    digest = hashlib.sha256(json.dumps(sorted(int(s) for s in scales)).encode())
    for folder in sorted(folders, key=lambda f: Path(f).name):
        for path in list_images(folder):
            digest.update(f"{Path(folder).name}/{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def inputs_fingerprint(outputs: Sequence[ArchOutputs], settings: RegisterSettings, eval_fingerprint: str) -> str:
    """SHA-256 over every model and metrics file, the settings and the evaluation data."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode() + eval_fingerprint.encode())
    for output in sorted(outputs, key=lambda o: o.arch):
        files = output.files()
        if output.tuning is not None:
            files["tuning"] = output.tuning
        for role in ("model", "metrics", "tuning"):
            if role in files:
                digest.update(f"{output.arch}/{role}:{sha256_file(files[role])}\n".encode())
    return digest.hexdigest()


def figures_of(summary: Mapping[str, Any], version: str | None = None) -> Figures:
    efficiency = summary["efficiency"]
    return Figures(mean_psnr(summary), int(efficiency["params"]), int(efficiency["model_bytes"]), version)


def _find_version(client: MlflowClient, name: str, fingerprint: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and tags.`{FINGERPRINT_TAG}`='{fingerprint}'")
    except MlflowException:
        return None
    return found[0] if found else None


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _log_architecture(
    client: MlflowClient,
    parent_id: str,
    output: ArchOutputs,
    summary: Mapping[str, Any],
    tags: Mapping[str, str],
    staging: Path,
) -> tuple[str, str]:
    """Fill the architecture's child run; returns (run id, model URI). The run ends FAILED on error."""
    files = output.files()
    training = load_checkpoint(files["checkpoint"])
    payload = load_checkpoint(files["model"])
    model = model_from_checkpoint(payload)
    history = json.loads(files["history"].read_text())
    run = tracking.child_run(client, parent_id, output.arch)
    run_id = run.info.run_id
    with tracking.active_run(run_id):
        client.set_tag(run_id, "device", summary["efficiency"].get("device", "unknown"))
        deploy = tracking.deploy_tags(summary)
        for key, value in {**tags, **deploy}.items():
            client.set_tag(run_id, key, value)
        tracking.log_params(client, run_id, {"arch": output.arch, **training.get("train_config", {})})
        tracking.log_history(client, run_id, history)
        tracking.log_metrics(client, run_id, tracking.evaluation_metrics(summary), step=len(history))
        size = model_size_report(output.arch, model, {"checkpoint.pt": files["checkpoint"], "model.pt": files["model"]})
        size_path = staging / output.arch / "model_size.json"
        write_json(size_path, size)
        client.log_artifact(run_id, str(size_path))
        for role in ("checkpoint", "model"):
            client.log_artifact(run_id, str(files[role]), artifact_path="checkpoint")
        for role in ("history", "metrics", "per_image", "table"):
            client.log_artifact(run_id, str(files[role]), artifact_path="evaluation" if role != "history" else None)
        if output.tuning is not None:
            _attach_tuning(client, run_id, output.tuning)
        model_uri = tracking.log_model(model, output.arch, {"mean_psnr": mean_psnr(summary), **deploy})
    return run_id, model_uri


def _attach_tuning(client: MlflowClient, run_id: str, study_file: Path) -> None:
    """Record the study on the architecture's run and nest the study's run (with its trials) under it."""
    from mlflow.exceptions import MlflowException

    study = json.loads(study_file.read_text())
    client.set_tag(run_id, "tuning_study", study["study"])
    client.set_tag(run_id, "tuning_best_val_psnr_db", f"{study['best_value_db']:.4f}")
    client.log_artifact(run_id, str(study_file), artifact_path="tuning")
    tuning_run = study.get("mlflow_run_id")
    if tuning_run and tuning_run != run_id:
        try:
            client.set_tag(tuning_run, "mlflow.parentRunId", run_id)
        except MlflowException:  # the study was tuned against another tracking store
            client.set_tag(run_id, "tuning_run_id", f"{tuning_run} (not in this store)")


def _register_version(
    client: MlflowClient, arch: str, model_uri: str, run_id: str, tags: Mapping[str, str]
) -> ModelVersion:
    import mlflow

    version = mlflow.register_model(model_uri, arch, tags=dict(tags))
    client.set_model_version_tag(arch, version.version, "run_id", run_id)
    return client.get_model_version(arch, version.version)


def _champion_figures(
    client: MlflowClient,
    settings: RegisterSettings,
    eval_fingerprint: str,
    eval_folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
) -> Figures | None:
    """The current champion's figures on this run's evaluation data (re-evaluated if its data differ)."""
    champion = _champion(client, settings.candidate)
    if champion is None:
        return None
    tags = champion.tags
    params, model_bytes = int(float(tags["params"])), int(float(tags["model_bytes"]))
    if tags.get(EVAL_FINGERPRINT_TAG) == eval_fingerprint:
        return Figures(float(tags["mean_psnr"]), params, model_bytes, str(champion.version))
    from asymsr.evaluation import evaluate_folders
    from asymsr.inference import load_predictor

    predictor = load_predictor(f"models:/{settings.candidate}/{champion.version}", device="auto")
    summary, _ = evaluate_folders(predictor, eval_folders, scales, progress=False)
    return Figures(mean_psnr(summary), params, model_bytes, str(champion.version))


def _apply(client: MlflowClient, settings: RegisterSettings, version: ModelVersion, decision: Decision) -> None:
    """Aliases, optional stages, and the audit tags on the version."""
    name, number = settings.candidate, str(version.version)
    audit = {
        DECISION_TAG: decision.label,
        "decision_reason": decision.reason,
        "decision_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decision_figures": json.dumps(decision.figures, sort_keys=True),
        "psnr_drop_db": f"{decision.figures['psnr_drop_db']:.4f}",
        "compared_champion_version": str((decision.figures["champion"] or {}).get("version") or "none"),
    }
    for key, value in audit.items():
        client.set_model_version_tag(name, number, key, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, number)
        if settings.use_stages:
            client.transition_model_version_stage(name, number, "Production", archive_existing_versions=True)
            previous = (decision.figures["champion"] or {}).get("version")
            if previous and client.get_model_version(name, previous).current_stage != "Archived":
                client.transition_model_version_stage(name, previous, "Archived")
    else:
        client.set_registered_model_alias(name, CHALLENGER, number)


def _record(
    parent_id: str, fingerprint: str, versions: Mapping[str, ModelVersion], decision: Mapping[str, Any]
) -> dict:
    return {
        "fingerprint": fingerprint,
        "parent_run_id": parent_id,
        "versions": {arch: str(version.version) for arch, version in versions.items()},
        "decision": decision,
    }


def register_pipeline(
    outputs: Sequence[ArchOutputs],
    settings: RegisterSettings,
    eval_folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    out: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    reports: Sequence[str | os.PathLike[str]] = (),
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Log, register and judge one pipeline run; writes the outcome as JSON to ``out``.

    Args:
        outputs: the reference's and the candidate's files (and any other architecture's).
        settings: experiment, candidate, reference and gate settings.
        eval_folders, scales: the held-out evaluation data (for the fingerprint, and to
            re-evaluate the champion if it was scored on other data).
        out: JSON record ``{fingerprint, parent_run_id, versions, decision, unchanged}``.
        params: the pipeline parameters, logged flattened on the parent run.
        reports: files logged on the parent run under ``report/`` (comparison, plots).
        parent_run_id: attach to this run instead of creating one.
        tags: extra tags for every run (git commit, DVC data hash, profile).

    Raises:
        FileNotFoundError: an input file is missing (named).
        KeyError: the candidate or reference architecture is not among ``outputs``.
        TrackingUnavailable: the tracking store does not answer.
    """
    by_arch = {output.arch: output for output in outputs}
    for role in ("candidate", "reference"):
        if getattr(settings, role) not in by_arch:
            raise KeyError(
                f"register.{role}: {getattr(settings, role)!r} is not among the given models {sorted(by_arch)}"
            )
    for output in outputs:
        for path in [*output.files().values(), *([output.tuning] if output.tuning else [])]:
            if not path.is_file():
                raise FileNotFoundError(f"{output.arch}: missing input {path}")
    reports = [Path(report) for report in reports]
    for report in reports:
        if not report.is_file():
            raise FileNotFoundError(f"report file not found: {report}")
    summaries = {arch: load_summary(output.metrics) for arch, output in by_arch.items()}
    eval_fingerprint = evaluation_fingerprint(eval_folders, scales)
    fingerprint = inputs_fingerprint(outputs, settings, eval_fingerprint)
    tags = dict(tags or {})

    client = tracking.connect()
    existing = {arch: _find_version(client, arch, fingerprint) for arch in by_arch}
    candidate_version = existing[settings.candidate]
    if all(existing.values()) and candidate_version is not None and DECISION_TAG in candidate_version.tags:
        record = _record(
            candidate_version.tags.get("parent_run_id", ""),
            fingerprint,
            existing,  # type: ignore[arg-type]
            {
                "label": candidate_version.tags[DECISION_TAG],
                "reason": candidate_version.tags["decision_reason"],
                "figures": json.loads(candidate_version.tags["decision_figures"]),
            },
        )
        record["unchanged"] = True
        write_json(out, record)
        return record

    stack = contextlib.ExitStack()  # the staging folder of the files logged as artifacts
    created_parent = parent_run_id is None
    parent_id = parent_run_id or tracking.start_parent_run(
        client, settings.experiment, f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}", tags
    )
    try:
        staging = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asymsr-register-")))
        versions: dict[str, ModelVersion] = {}
        logged: dict[str, tuple[str, str]] = {}
        for arch, output in by_arch.items():
            if existing[arch] is None:
                logged[arch] = _log_architecture(client, parent_id, output, summaries[arch], tags, staging)
        tracking.log_params(client, parent_id, dict(params or {}))
        for key, value in tags.items():
            client.set_tag(parent_id, key, value)
        for report in reports:
            client.log_artifact(parent_id, str(report), artifact_path="report")
        for arch in by_arch:
            found = existing[arch]
            if found is not None:
                versions[arch] = found
                continue
            run_id, model_uri = logged[arch]
            figures = figures_of(summaries[arch])
            versions[arch] = _register_version(
                client,
                arch,
                model_uri,
                run_id,
                {
                    FINGERPRINT_TAG: fingerprint,
                    EVAL_FINGERPRINT_TAG: eval_fingerprint,
                    "parent_run_id": parent_id,
                    "mean_psnr": f"{figures.mean_psnr:.6f}",
                    "params": str(figures.params),
                    "model_bytes": str(figures.model_bytes),
                    **tags,
                },
            )
        candidate = versions[settings.candidate]
        decision = decide(
            figures_of(summaries[settings.candidate], str(candidate.version)),
            figures_of(summaries[settings.reference], str(versions[settings.reference].version)),
            _champion_figures(client, settings, eval_fingerprint, eval_folders, scales),
            settings.max_psnr_drop,
        )
        _apply(client, settings, candidate, decision)
        outcome = {"label": decision.label, "reason": decision.reason, "figures": decision.figures}
        record = _record(parent_id, fingerprint, versions, outcome)
        record["unchanged"] = False
        candidate_run = candidate.run_id or versions[settings.candidate].tags.get("run_id")
        for run_id in (parent_id, candidate_run):
            if run_id:
                client.set_tag(run_id, "asymsr.decision", decision.label)
                client.set_tag(run_id, "asymsr.decision_reason", decision.reason)
        decision_path = staging / "promotion.json"
        write_json(decision_path, record)
        client.log_artifact(parent_id, str(decision_path))
    except BaseException:
        if created_parent:
            tracking.finish(client, parent_id, "FAILED")
        raise
    finally:
        stack.close()
    if created_parent:
        tracking.finish(client, parent_id)
    write_json(out, record)
    return record
