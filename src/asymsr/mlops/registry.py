"""``asymsr register``: record a pipeline run in MLflow, register both models, apply the gate.

What one call does, in this order (see :mod:`asymsr.mlops.tracking` for names and layout):

1. attach to the parent run it is given, or create one;
2. per architecture, in its child run: the resolved training config as parameters, the
   per-epoch curves (unless already logged live), the evaluation and efficiency metrics,
   the tags, the artifacts (checkpoints, history, evaluation tables, model-size report) and
   the MLflow model;
3. on the parent: the pipeline parameters and the comparison report with its plots;
4. only when all of that succeeded: one new registry version per architecture;
5. the promotion gate (:mod:`asymsr.mlops.promotion`) on the candidate version, recorded as tags
   on the version and on the runs, and as aliases ``champion`` / ``challenger`` (plus the
   ``Production`` / ``Archived`` stages unless ``use_stages`` is off; stages are deprecated
   upstream, so a store without them gets a one-line notice instead of a failure).

Several runs can offer a version of the candidate architecture (``register.candidate_runs``:
the Asym_VDSR trained from scratch and the one compressed from the VDSR, say). Each is logged
and registered, tagged with its origin; the one with the best mean PSNR on this run's
evaluation data goes to the gate, and the others are tagged ``rejected`` with that reason.

Idempotent: the inputs' fingerprint (model and metrics files, settings, evaluation data) is
a tag of every version it registers; a second call with the same inputs finds the versions
and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asymsr.eval.efficiency import model_size_report
from asymsr.mlops import tracking
from asymsr.mlops.promotion import Decision, Figures, best_candidate, decide
from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.schema.params import RegisterConfig
from asymsr.schema.records import CompressionRecord, EvaluationSummary, RegistryRecord, StudySummary, TrainingHistory
from asymsr.util.fs import sha256_file, write_json
from asymsr.util.images import list_images

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

FINGERPRINT_TAG = "asymsr.fingerprint"
EVAL_FINGERPRINT_TAG = "asymsr.eval_fingerprint"
DECISION_TAG = "decision"
RUN_TAG = "asymsr.run"  # which of the pipeline's runs a version came from (asym_vdsr, asym_vdsr_compressed)
CHOSEN_TAG = "asymsr.gate_candidate"  # on the version of the run's best candidate, the one that was judged
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ArchOutputs:
    """What the pipeline produced for one model: its architecture, and the run that made it."""

    arch: str  # the registered model it becomes a version of
    run_dir: Path  # `asymsr train --out` or `asymsr compress --out`: model.pt, checkpoint.pt, history.json
    metrics: Path  # `asymsr evaluate --out`: summary JSON; <stem>.per_image.json and <stem>.md beside it
    tuning: Path | None = None  # `asymsr tune --out` study.json, when the run was tuned
    label: str = ""  # the run's name in this pipeline (default: arch), e.g. asym_vdsr_compressed

    @property
    def name(self) -> str:
        return self.label or self.arch

    @property
    def compression(self) -> Path | None:
        """``compression.json`` when the model was made by ``asymsr compress``."""
        path = self.run_dir / "compression.json"
        return path if path.is_file() else None

    def origin_tags(self) -> dict[str, str]:
        """Where the model came from: trained, or compressed from which teacher, at which rank and budget."""
        if self.compression is None:
            return {"origin": "trained"}
        record = CompressionRecord.read(self.compression)
        return {
            "origin": "compressed",
            "teacher": record.teacher,
            "teacher_sha256": record.teacher_sha256,
            "rank": str(record.rank),
            "finetune_steps": str(record.steps),
        }

    def files(self) -> dict[str, Path]:
        """Every input file by role; all must exist."""
        stem = self.metrics.stem
        files = {
            "model": self.run_dir / "model.pt",
            "checkpoint": self.run_dir / "checkpoint.pt",
            "history": self.run_dir / "history.json",
            "metrics": self.metrics,
            "per_image": self.metrics.with_name(f"{stem}.per_image.json"),
            "table": self.metrics.with_name(f"{stem}.md"),
        }
        if self.tuning is not None:
            files["tuning"] = self.tuning
        if self.compression is not None:
            files["compression"] = self.compression
        return files


def evaluation_fingerprint(folders: Sequence[str | os.PathLike[str]], scales: Sequence[int]) -> str:
    """SHA-256 over the test images' names and contents and the scales: "the same evaluation data"."""
    digest = hashlib.sha256(json.dumps(sorted(int(s) for s in scales)).encode())
    for folder in sorted(folders, key=lambda f: Path(f).name):
        for path in list_images(folder):
            digest.update(f"{Path(folder).name}/{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def inputs_fingerprint(outputs: Sequence[ArchOutputs], settings: RegisterConfig, eval_fingerprint: str) -> str:
    """SHA-256 over every model and metrics file, the settings and the evaluation data."""
    digest = hashlib.sha256(json.dumps(settings.model_dump(), sort_keys=True).encode() + eval_fingerprint.encode())
    for output in sorted(outputs, key=lambda o: o.name):
        files = output.files()
        for role in ("model", "metrics", "tuning", "compression"):
            if role in files:
                digest.update(f"{output.name}/{role}:{sha256_file(files[role])}\n".encode())
    return digest.hexdigest()


def figures_of(summary: EvaluationSummary, version: str | None = None) -> Figures:
    efficiency = summary.efficiency
    return Figures(
        mean_psnr=summary.mean("psnr"), params=efficiency.params, model_bytes=efficiency.model_bytes, version=version
    )


def _find_version(client: MlflowClient, output: ArchOutputs, fingerprint: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    query = f"name='{output.arch}' and tags.`{FINGERPRINT_TAG}`='{fingerprint}' and tags.`{RUN_TAG}`='{output.name}'"
    try:
        found = client.search_model_versions(query)
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
    summary: EvaluationSummary,
    tags: Mapping[str, str],
    staging: Path,
) -> tuple[str, str]:
    """Fill the architecture's child run; returns (run id, model URI). The run ends FAILED on error."""
    files = output.files()
    training = load_checkpoint(files["checkpoint"])
    model = model_from_checkpoint(load_checkpoint(files["model"]))
    run_id = tracking.child_run(client, parent_id, output.name).info.run_id
    with tracking.active_run(run_id):
        deploy = tracking.deploy_tags(summary)
        run_tags = {"device": summary.efficiency.device or "unknown", **tags, **deploy, **output.origin_tags()}
        for key, value in run_tags.items():
            client.set_tag(run_id, key, value)
        tracking.log_params(client, run_id, {"arch": output.arch, **training.get("train_config", {})})
        history = TrainingHistory.read(files["history"])
        tracking.log_history(client, run_id, history)
        size = model_size_report(output.arch, model, {"checkpoint.pt": files["checkpoint"], "model.pt": files["model"]})
        size_path = staging / output.name / "model_size.json"
        write_json(size_path, size)
        client.log_artifact(run_id, str(size_path))
        for role in ("checkpoint", "model"):
            client.log_artifact(run_id, str(files[role]), artifact_path="checkpoint")
        for role in ("history", "metrics", "per_image", "table"):
            client.log_artifact(run_id, str(files[role]), artifact_path="evaluation" if role != "history" else None)
        if output.tuning is not None:
            _attach_tuning(client, run_id, output.tuning)
        if output.compression is not None:
            client.log_artifact(run_id, str(output.compression), artifact_path="compression")
        logged = tracking.log_model(files["model"], output.arch, {"mean_psnr": summary.mean("psnr"), **deploy})
        # on the run and on its LoggedModel, so the model's page shows PSNR, SSIM, size and latency
        evaluation = tracking.evaluation_metrics(summary)
        tracking.log_metrics(client, run_id, evaluation, step=len(history.epochs), model_id=logged.model_id)
    return run_id, logged.model_uri


def _attach_tuning(client: MlflowClient, run_id: str, study_file: Path) -> None:
    """Record the study on the architecture's run and nest the study's run (with its trials) under it."""
    from mlflow.exceptions import MlflowException

    study = StudySummary.read(study_file)
    client.set_tag(run_id, "tuning_study", study.study)
    client.set_tag(run_id, "tuning_best_val_psnr_db", f"{study.best_value_db:.4f}")
    client.log_artifact(run_id, str(study_file), artifact_path="tuning")
    if study.mlflow_run_id and study.mlflow_run_id != run_id:
        try:
            client.set_tag(study.mlflow_run_id, "mlflow.parentRunId", run_id)
        except MlflowException:  # the study was tuned against another tracking store
            client.set_tag(run_id, "tuning_run_id", f"{study.mlflow_run_id} (not in this store)")


def _register_version(
    client: MlflowClient, arch: str, model_uri: str, run_id: str, tags: Mapping[str, str]
) -> ModelVersion:
    import mlflow

    version = mlflow.register_model(model_uri, arch, tags=dict(tags))
    client.set_model_version_tag(arch, version.version, "run_id", run_id)
    return client.get_model_version(arch, version.version)


def _champion_figures(client: MlflowClient, settings: RegisterConfig, evaluation: _Evaluation) -> Figures | None:
    """The current champion's figures on this run's evaluation data (re-evaluated if its data differ)."""
    champion = _champion(client, settings.candidate)
    if champion is None:
        return None
    tags = champion.tags
    params, model_bytes = int(float(tags["params"])), int(float(tags["model_bytes"]))
    if tags.get(EVAL_FINGERPRINT_TAG) == evaluation.fingerprint:
        mean_psnr = float(tags["mean_psnr"])
    else:
        from asymsr.eval.evaluation import evaluate_folders, mean_scores
        from asymsr.mlops.loading import load_predictor

        predictor = load_predictor(f"models:/{settings.candidate}/{champion.version}", device="auto")
        per_image = evaluate_folders(predictor, evaluation.folders, evaluation.scales, progress=False)
        scores = mean_scores(per_image)
        values = [s.psnr for by_scale in scores.values() for s in by_scale.values()]
        mean_psnr = sum(values) / len(values)
    return Figures(mean_psnr=mean_psnr, params=params, model_bytes=model_bytes, version=str(champion.version))


def _apply(client: MlflowClient, settings: RegisterConfig, version: ModelVersion, decision: Decision) -> None:
    """Aliases, optional stages, and the audit tags on the version."""
    name, number = settings.candidate, str(version.version)
    champion = decision.figures.champion
    audit = {
        DECISION_TAG: decision.label,
        "decision_reason": decision.reason,
        "decision_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decision_figures": decision.figures.model_dump_json(),
        "psnr_drop_db": f"{decision.figures.psnr_drop_db:.4f}",
        "compared_champion_version": str(champion.version if champion and champion.version else "none"),
    }
    for key, value in audit.items():
        client.set_model_version_tag(name, number, key, value)
    if not decision.promote:
        client.set_registered_model_alias(name, CHALLENGER, number)
        return
    client.set_registered_model_alias(name, CHAMPION, number)
    if settings.use_stages:
        _move_stages(client, name, number, champion.version if champion else None)


def _move_stages(client: MlflowClient, name: str, number: str, previous: str | None) -> None:
    """The promoted version to ``Production``, the previous champion to ``Archived``.

    Stages are deprecated upstream in favour of aliases; the alias above is what counts. So when
    a store or a future MLflow refuses or lacks stages, this says so in one line and goes on.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.transition_model_version_stage(name, number, "Production", archive_existing_versions=True)
        if previous and client.get_model_version(name, previous).current_stage != "Archived":
            client.transition_model_version_stage(name, previous, "Archived")
    except (AttributeError, NotImplementedError, MlflowException) as error:
        problem = (getattr(error, "message", None) or str(error) or type(error).__name__).splitlines()[0][:200]
        print(
            f"asymsr register: notice: registry stages unavailable ({problem}); "
            f"{name} version {number} is the champion by alias only",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class _Evaluation:
    """The held-out evaluation data of the run, and its fingerprint."""

    folders: list[Path]
    scales: list[int]
    fingerprint: str


def _check_inputs(outputs: Sequence[ArchOutputs], settings: RegisterConfig, reports: Sequence[Path]) -> None:
    by_arch = {output.arch for output in outputs}
    for role in ("candidate", "reference"):
        if getattr(settings, role) not in by_arch:
            raise KeyError(
                f"register.{role}: {getattr(settings, role)!r} is not among the given models {sorted(by_arch)}"
            )
    names = [output.name for output in outputs]
    if len(set(names)) != len(names):
        raise ValueError(f"register: each run may be given once, got {names}")
    for output in outputs:
        for path in output.files().values():
            if not path.is_file():
                raise FileNotFoundError(f"{output.name}: missing input {path}")
    for report in reports:
        if not report.is_file():
            raise FileNotFoundError(f"report file not found: {report}")


def _unchanged_record(fingerprint: str, existing: Mapping[str, ModelVersion | None]) -> RegistryRecord | None:
    """The record of an earlier call with the same inputs, if it registered and decided everything."""
    chosen = [name for name, version in existing.items() if version is not None and CHOSEN_TAG in version.tags]
    if not all(existing.values()) or len(chosen) != 1 or DECISION_TAG not in existing[chosen[0]].tags:  # type: ignore[union-attr]
        return None
    tags = existing[chosen[0]].tags  # type: ignore[union-attr]
    decision = {
        "label": tags[DECISION_TAG],
        "reason": tags["decision_reason"],
        "figures": json.loads(tags["decision_figures"]),
    }
    return RegistryRecord(
        fingerprint=fingerprint,
        parent_run_id=tags.get("parent_run_id", ""),
        versions={name: str(version.version) for name, version in existing.items()},  # type: ignore[union-attr]
        decision=Decision.model_validate(decision),
        unchanged=True,
        candidate_run=chosen[0],
    )


def register_pipeline(
    outputs: Sequence[ArchOutputs],
    settings: RegisterConfig,
    eval_folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    out: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    reports: Sequence[str | os.PathLike[str]] = (),
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> RegistryRecord:
    """Log, register and judge one pipeline run; writes the :class:`RegistryRecord` to ``out``.

    Args:
        outputs: the reference's and the candidate's files (and any other architecture's).
        settings: experiment, candidate, reference and gate settings.
        eval_folders, scales: the held-out evaluation data (for the fingerprint, and to
            re-evaluate the champion if it was scored on other data).
        params: the pipeline parameters, logged flattened on the parent run.
        reports: files logged on the parent run under ``report/`` (comparison, plots).
        parent_run_id: attach to this run instead of creating one.
        tags: extra tags for every run (git commit, DVC data hash, profile).

    Raises:
        FileNotFoundError: an input file is missing (named).
        KeyError: the candidate or reference architecture is not among ``outputs``.
        TrackingUnavailable: the tracking store does not answer.
    """
    reports = [Path(report) for report in reports]
    _check_inputs(outputs, settings, reports)
    summaries = {output.name: EvaluationSummary.read(output.metrics) for output in outputs}
    folders = [Path(folder) for folder in eval_folders]
    evaluation = _Evaluation(folders, list(scales), evaluation_fingerprint(folders, scales))
    fingerprint = inputs_fingerprint(outputs, settings, evaluation.fingerprint)
    client = tracking.connect()
    existing = {output.name: _find_version(client, output, fingerprint) for output in outputs}
    record = _unchanged_record(fingerprint, existing)
    if record is None:
        run = _PipelineRun(client, settings, dict(tags or {}), evaluation, fingerprint)
        inputs = _Inputs(outputs, summaries, existing, dict(params or {}), reports)
        record = run.record(inputs, parent_run_id)
    record.write(out)
    return record


@dataclass(frozen=True)
class _Inputs:
    """What one pipeline execution hands to the registry."""

    outputs: Sequence[ArchOutputs]
    summaries: dict[str, EvaluationSummary]
    existing: dict[str, ModelVersion | None]  # versions registered before from these very inputs
    params: dict[str, Any]
    reports: list[Path]


@dataclass
class _PipelineRun:
    """One pipeline execution being logged, registered and judged."""

    client: MlflowClient
    settings: RegisterConfig
    tags: dict[str, str]
    evaluation: _Evaluation
    fingerprint: str

    def record(self, inputs: _Inputs, parent_run_id: str | None) -> RegistryRecord:
        """Log everything, then register and decide; the parent run ends FAILED on error if it was created here."""
        created = parent_run_id is None
        parent_id = parent_run_id or tracking.start_parent_run(
            self.client, self.settings.experiment, f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}", self.tags
        )
        try:
            with tempfile.TemporaryDirectory(prefix="asymsr-register-") as staging:
                record = self._log_and_decide(inputs, parent_id, Path(staging))
        except BaseException:
            if created:
                tracking.finish(self.client, parent_id, "FAILED")
            raise
        if created:
            tracking.finish(self.client, parent_id)
        return record

    def _log_and_decide(self, inputs: _Inputs, parent_id: str, staging: Path) -> RegistryRecord:
        summaries, existing = inputs.summaries, inputs.existing
        logged = {
            output.name: _log_architecture(self.client, parent_id, output, summaries[output.name], self.tags, staging)
            for output in inputs.outputs
            if existing[output.name] is None
        }
        self._log_parent(parent_id, inputs.params, inputs.reports)
        versions = {
            output.name: existing[output.name] or self._register(output, *logged[output.name], summaries, parent_id)
            for output in inputs.outputs
        }
        reference = next(output.name for output in inputs.outputs if output.arch == self.settings.reference)
        chosen = best_candidate(
            {o.name: summaries[o.name] for o in inputs.outputs if o.arch == self.settings.candidate}
        )
        candidate = versions[chosen]
        decision = decide(
            figures_of(summaries[chosen], str(candidate.version)),
            figures_of(summaries[reference], str(versions[reference].version)),
            _champion_figures(self.client, self.settings, self.evaluation),
            self.settings.max_psnr_drop,
        )
        self._reject_runner_ups(inputs.outputs, versions, summaries, chosen)
        _apply(self.client, self.settings, candidate, decision)
        # last: a call that finds this tag (and the decision) takes the whole decision as done
        self.client.set_model_version_tag(self.settings.candidate, str(candidate.version), CHOSEN_TAG, "true")
        record = RegistryRecord(
            fingerprint=self.fingerprint,
            parent_run_id=parent_id,
            versions={name: str(version.version) for name, version in versions.items()},
            decision=decision,
            unchanged=False,
            candidate_run=chosen,
        )
        self._log_decision(parent_id, candidate, record, staging)
        return record

    def _log_parent(self, parent_id: str, params: dict[str, Any], reports: list[Path]) -> None:
        tracking.log_params(self.client, parent_id, params)
        for key, value in self.tags.items():
            self.client.set_tag(parent_id, key, value)
        for report in reports:
            self.client.log_artifact(parent_id, str(report), artifact_path="report")

    def _reject_runner_ups(
        self,
        outputs: Sequence[ArchOutputs],
        versions: dict[str, ModelVersion],
        summaries: dict[str, EvaluationSummary],
        chosen: str,
    ) -> None:
        """Tag the other candidates' versions with why they were not judged."""
        best = summaries[chosen].mean("psnr")
        for output in outputs:
            if output.arch != self.settings.candidate or output.name == chosen:
                continue
            gap = best - summaries[output.name].mean("psnr")
            reason = f"not this run's best candidate: {gap:.3f} dB below {chosen} on the same evaluation data"
            number = str(versions[output.name].version)
            self.client.set_model_version_tag(output.arch, number, DECISION_TAG, "rejected")
            self.client.set_model_version_tag(output.arch, number, "decision_reason", reason)

    def _register(
        self,
        output: ArchOutputs,
        run_id: str,
        model_uri: str,
        summaries: dict[str, EvaluationSummary],
        parent_id: str,
    ) -> ModelVersion:
        figures = figures_of(summaries[output.name])
        tags = {
            RUN_TAG: output.name,
            **output.origin_tags(),
            FINGERPRINT_TAG: self.fingerprint,
            EVAL_FINGERPRINT_TAG: self.evaluation.fingerprint,
            "parent_run_id": parent_id,
            "mean_psnr": f"{figures.mean_psnr:.6f}",
            "params": str(figures.params),
            "model_bytes": str(figures.model_bytes),
            **self.tags,
        }
        return _register_version(self.client, output.arch, model_uri, run_id, tags)

    def _log_decision(self, parent_id: str, candidate: ModelVersion, record: RegistryRecord, staging: Path) -> None:
        candidate_run = candidate.run_id or candidate.tags.get("run_id")
        for run_id in (parent_id, candidate_run):
            if run_id:
                self.client.set_tag(run_id, "asymsr.decision", record.decision.label)
                self.client.set_tag(run_id, "asymsr.decision_reason", record.decision.reason)
        decision_path = record.write(staging / "promotion.json")
        self.client.log_artifact(parent_id, str(decision_path))
