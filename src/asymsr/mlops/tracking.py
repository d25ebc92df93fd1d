"""MLflow tracking: where runs go, how figures are named, and what every run carries.

Store: ``MLFLOW_TRACKING_URI`` when set (e.g. ``http://mlflow:5000`` on a cluster), otherwise
an embedded local store inside the project, ``mlruns/mlflow.db`` (SQLite, runs and registry)
with artifacts under ``mlruns/artifacts``, so that ``make run`` needs no server.

Run layout: one *parent* run per pipeline execution and one *child* run per architecture
(tag ``asymsr.arch``) under it. The parent's id travels between stages as
``--parent-run-id`` or the environment variable ``ASYMSR_PARENT_RUN_ID``; a stage that gets
one attaches to it, and :func:`child_run` finds or creates the architecture's child there.

Metric names are stable: ``<dataset>_x<scale>_psnr`` / ``_ssim`` (dB / [0, 1]),
``mean_psnr``, ``mean_ssim``, ``params``, ``model_bytes``, ``macs_per_pixel``,
``latency_ms_<device>`` (ms, the fastest deploy form), ``latency_ms_as_trained_<device>`` (ms,
the network as stored, NCHW) and ``deploy_latency_ms_<form>_<format>`` (ms, every deploy
candidate timed on the device); per-epoch training curves are ``train_loss``, ``val_psnr``,
``val_psnr_x<scale>``, ``val_bicubic_psnr``, ``lr``, ``epoch_seconds`` and ``patches_per_second``
with the epoch as step. The chosen deploy form is a tag of the architecture's run and metadata
of its MLflow model: ``deploy_form``, ``deploy_memory_format``, ``deploy_device``
(:func:`deploy_tags`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from asymsr.schema.records import EpochRecord, EvaluationSummary, TrainingHistory

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.models import ModelInfo, ModelSignature

    from asymsr.nn.models import VDSR

PARENT_RUN_ENV = "ASYMSR_PARENT_RUN_ID"
LOCAL_STORE = Path("mlruns")
DEFAULT_EXPERIMENT = "asymsr"
ARCH_TAG = "asymsr.arch"
ROLE_TAG = "asymsr.role"
CHILD_RUN_PARAM = "asymsr.child_run"  # the parent's parameter asymsr.child_run.<arch> names that architecture's run
CONNECT_ATTEMPTS = 3
CHECKPOINT_PATH = re.compile(r"artifacts/[A-Za-z0-9_][A-Za-z0-9._-]*")  # where a logged model keeps model.pt
OUTPUT_PATHSPECS = (":!dvc.lock", ":!metrics", ":!reports")  # written by `dvc repro`, not by hand


class TrackingUnavailable(ConnectionError):
    """The tracking server cannot be reached; the message names its URI."""


def local_store(root: str | os.PathLike[str] = ".") -> tuple[str, str]:
    """(tracking URI, artifact URI) of the embedded store under ``root/mlruns``."""
    folder = (Path(root) / LOCAL_STORE).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded store of the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_store()[0]


def connect(uri: str | None = None, attempts: int = CONNECT_ATTEMPTS) -> MlflowClient:
    """Point MLflow at ``uri`` (default :func:`tracking_uri`) and check that it answers.

    A local SQLite store is created on first use (its folder included). A server gets
    ``attempts`` tries, 2 s apart, each with MLflow's own HTTP retries capped at 2 and a 10 s
    timeout unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` say
    otherwise.

    Raises:
        TrackingUnavailable: the store did not answer; the message names the URI.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            client.search_experiments(max_results=1)
            return client
        except Exception as caught:  # requests, SQLAlchemy and MLflow each raise their own types
            error = caught
            if attempt + 1 < attempts:
                time.sleep(2.0)
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise TrackingUnavailable(f"MLflow tracking store {uri} did not answer after {attempts} attempts: {reason}")


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if absent (SQLite store: artifacts beside the database)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None  # a server decides (--artifacts-destination)
    if client.tracking_uri.startswith("sqlite:///"):
        artifact_location = (Path(client.tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def start_parent_run(client: MlflowClient, experiment: str, name: str, tags: Mapping[str, str]) -> str:
    """Create a pipeline-level run in ``experiment``; returns its id."""
    experiment_id = ensure_experiment(client, experiment)
    run = client.create_run(experiment_id, run_name=name, tags={ROLE_TAG: "pipeline", **tags})
    return run.info.run_id


def parent_run_id(given: str | None = None) -> str | None:
    """``given``, else ``$ASYMSR_PARENT_RUN_ID``, else None (empty strings count as absent)."""
    return given or os.environ.get(PARENT_RUN_ENV) or None


def child_run(client: MlflowClient, parent_id: str, arch: str, tags: Mapping[str, str] | None = None) -> Run:
    """The architecture's run under ``parent_id``: the existing one, or a new one.

    Several processes may ask at once (the tune workers of one architecture start together, on
    a cluster and under ``kfp.local`` alike). They agree through a parameter of the parent
    (:func:`child_run_key`): MLflow parameters are write-once in its SQL stores (SQLite,
    PostgreSQL, a server over either), so the store keeps the first run id claimed there and
    refuses any other, and whoever made a run that lost deletes it.

    Raises:
        ValueError: the run claimed for ``arch`` has been deleted (the claim cannot be moved).
    """
    key = child_run_key(arch)
    parent = client.get_run(parent_id)
    chosen = parent.data.params.get(key)
    if chosen is None:
        experiment_id = parent.info.experiment_id
        found = _children(client, experiment_id, parent_id, arch)  # made before claims existed, or a claim in flight
        candidate = found[0] if found else _create_child(client, experiment_id, parent_id, arch, tags)
        try:
            chosen = _claim(client, parent_id, key, candidate.info.run_id)
        finally:
            if not found and chosen != candidate.info.run_id:  # ours lost, or the claim failed
                _discard(client, candidate.info.run_id)
    run = client.get_run(chosen)
    if run.info.lifecycle_stage == "deleted":
        raise ValueError(
            f"run {chosen}, claimed for {arch} by parameter {key} of run {parent_id}, is deleted; "
            f"`mlflow runs restore --run-id {chosen}` brings it back"
        )
    return run


def child_run_key(arch: str) -> str:
    """The parent's parameter naming ``arch``'s run: ``asymsr.child_run.<arch>``, or for a name
    MLflow refuses in a key (``r=32``, say) ``asymsr.child_run_sha1.<its SHA-1>``; one to one."""
    if re.fullmatch(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", arch):
        return f"{CHILD_RUN_PARAM}.{arch}"
    return f"{CHILD_RUN_PARAM}_sha1.{hashlib.sha1(arch.encode()).hexdigest()}"


def _children(client: MlflowClient, experiment_id: str, parent_id: str, arch: str) -> list[Run]:
    """The live runs of ``arch`` under ``parent_id``, oldest first."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`{ARCH_TAG}` = '{arch}'",
    )
    return sorted(found, key=lambda run: (run.info.start_time, run.info.run_id))


def _create_child(
    client: MlflowClient, experiment_id: str, parent_id: str, arch: str, tags: Mapping[str, str] | None
) -> Run:
    return client.create_run(
        experiment_id,
        run_name=arch,
        tags={"mlflow.parentRunId": parent_id, ARCH_TAG: arch, ROLE_TAG: "architecture", **(tags or {})},
    )


def _claim(client: MlflowClient, parent_id: str, key: str, run_id: str) -> str:
    """Log ``key = run_id`` on the parent unless another id got there first; returns the id kept."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_param(parent_id, key, run_id, synchronous=True)  # an async log would never be refused
        return run_id
    except MlflowException:
        kept = client.get_run(parent_id).data.params.get(key)
        if kept is None:  # refused for another reason (the parent deleted, the store down)
            raise
        return kept


def _discard(client: MlflowClient, run_id: str) -> None:
    """Delete a run nothing was logged to; a store that refuses leaves it, with a warning."""
    try:
        client.delete_run(run_id)
    except Exception as error:  # the answer (the claimed run) stands either way
        warnings.warn(f"could not delete unused MLflow run {run_id}: {error}", stacklevel=3)


@contextmanager
def active_run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` MLflow's active run (``mlflow.pyfunc.log_model`` logs into the active run).

    The run ends FINISHED when the block completes and FAILED when it raises (Ctrl-C included).
    """
    import mlflow

    mlflow.start_run(run_id=run_id)
    try:
        yield
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def finish(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run as ended with ``status`` (FINISHED, FAILED or KILLED)."""
    client.set_terminated(run_id, status=status)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> ``{"a.b.c": "value"}`` with lists and scalars as JSON/str (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log nested parameters flattened; values already logged with the same value are skipped."""
    from mlflow.entities import Param

    logged = client.get_run(run_id).data.params
    new = [Param(key, value) for key, value in flatten(params).items() if logged.get(key) != value]
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start : start + 100])


def metric_key(name: str) -> str:
    """A metric or tag name with characters MLflow rejects replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def evaluation_metrics(summary: EvaluationSummary) -> dict[str, float]:
    """An evaluation summary as flat MLflow metrics (see the module docstring)."""
    metrics: dict[str, float] = {}
    for dataset, scale in summary.cases():
        scores = summary.scores[dataset][scale]
        metrics[metric_key(f"{dataset}_{scale}_psnr")] = scores.psnr
        metrics[metric_key(f"{dataset}_{scale}_ssim")] = scores.ssim
    if summary.scores:
        metrics["mean_psnr"] = summary.mean("psnr")
        metrics["mean_ssim"] = summary.mean("ssim")
    efficiency = summary.efficiency
    metrics["params"] = float(efficiency.params)
    for key in ("model_bytes", "macs_per_pixel"):
        if getattr(efficiency, key) is not None:
            metrics[key] = float(getattr(efficiency, key))
    device = device_slug(efficiency.device or "unknown")
    if efficiency.latency_ms is not None:
        metrics[metric_key(f"latency_ms_{device}")] = float(efficiency.latency_ms)
    if efficiency.latency_ms_as_trained is not None:
        metrics[metric_key(f"latency_ms_as_trained_{device}")] = float(efficiency.latency_ms_as_trained)
    if efficiency.deploy is not None:
        for candidate, ms in efficiency.deploy.timings_ms.items():
            metrics[metric_key(f"deploy_latency_ms_{candidate.replace('/', '_')}")] = float(ms)
    return metrics


def deploy_tags(summary: EvaluationSummary) -> dict[str, str]:
    """The deploy choice recorded in an evaluation summary, as run tags and model metadata.

    Keys ``deploy_form``, ``deploy_memory_format`` and ``deploy_device``; empty when the summary
    has none (evaluated without latency).
    """
    deploy = summary.efficiency.deploy
    if deploy is None:
        return {}
    return {"deploy_form": deploy.form, "deploy_memory_format": deploy.memory_format, "deploy_device": deploy.device}


def device_slug(device: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia_h100_80gb_hbm3"``; ``"cpu"`` stays."""
    return re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0, model_id: str | None = None
) -> None:
    """Log a flat mapping of metrics at one step in batches; with ``model_id`` they are also the
    metrics of that LoggedModel (the UI's model page shows them beside the model)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step, model_id=model_id) for key, value in metrics.items()]
    for start in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[start : start + 500])


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """One epoch of a training history as metrics."""
    metrics = {
        "train_loss": record.loss,
        "lr": record.lr,
        "epoch_seconds": record.seconds,
        "patches_per_second": record.patches_per_second,
    }
    if record.val_psnr is not None:
        metrics["val_psnr"] = record.val_psnr
    if record.val_bicubic_psnr is not None:
        metrics["val_bicubic_psnr"] = record.val_bicubic_psnr
    for scale, value in record.val_psnr_per_scale.items():
        metrics[f"val_psnr_{scale}"] = value
    return {key: float(value) for key, value in metrics.items()}


def log_history(client: MlflowClient, run_id: str, history: TrainingHistory) -> bool:
    """Log per-epoch curves unless the run already has them (e.g. logged live); True if logged."""
    if "train_loss" in client.get_run(run_id).data.metrics:
        return False
    for record in history.epochs:
        log_metrics(client, run_id, epoch_metrics(record), step=record.epoch)
    return True


def git_commit(root: str | os.PathLike[str] = ".") -> str:
    """HEAD's commit id, with ``-dirty`` if tracked files other than pipeline outputs changed.

    ``dvc.lock``, ``metrics/`` and ``reports/`` are written by the pipeline itself and do not
    count. ``"unknown"`` outside a git work tree.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUT_PATHSPECS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def dvc_data_hash(out: str, lock: str | os.PathLike[str] = "dvc.lock") -> str:
    """The md5 that ``dvc.lock`` records for output path ``out``; ``"unknown"`` if not recorded."""
    lock = Path(lock)
    if not lock.is_file():
        return "unknown"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for entry in stage.get("outs", []):
            if entry.get("path") == out and "md5" in entry:
                return str(entry["md5"])
    return "unknown"


def model_signature() -> ModelSignature:
    """Input and output are float32 (N, 1, H, W) luminance in [0, 1]; N, H and W are free."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(name: str) -> Schema:
        return Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1), name)])

    return ModelSignature(inputs=spec("bicubic_luminance"), outputs=spec("super_resolved_luminance"))


def pip_requirements() -> list[str]:
    """The package's run-time dependencies pinned to the installed versions (torch without ``+cpu``)."""
    from importlib.metadata import requires, version

    pins = []
    for requirement in requires("asymsr") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
        pins.append(f"{name}=={version(name).split('+')[0]}")
    return pins


def package_source() -> Path:
    """The folder of the ``asymsr`` package, logged with each model so that it loads without the project."""
    return Path(__file__).resolve().parents[1]


def log_model(checkpoint: str | os.PathLike[str], arch: str, metadata: Mapping[str, Any]) -> ModelInfo:
    """Log the asymsr checkpoint ``checkpoint`` as an MLflow model of the active run: an MLflow 3
    LoggedModel named ``model``. Returns its ``ModelInfo`` (``model_uri``, ``model_id``).

    The model is a pyfunc *from code* (:mod:`asymsr.mlops.serving`) whose one artifact is the
    checkpoint, so that ``mlflow models serve`` and ``mlflow.pyfunc.load_model`` work, and
    nothing in the registry is a pickle: :func:`load_logged_model` reads only the checkpoint,
    with ``weights_only=True``. The package code and exact pip requirements travel with it.
    """
    import mlflow.pyfunc
    import numpy as np

    from asymsr.mlops.serving import CHECKPOINT_ARTIFACT, MODEL_CODE

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=model_signature(),
        input_example={"bicubic_luminance": np.zeros((1, 1, 8, 8), dtype=np.float32)},  # shown by the UI and serving
        pip_requirements=pip_requirements(),
        code_paths=[str(package_source())],
        metadata={"arch": arch, **metadata},
    )
    return info


def load_logged_model(uri: str) -> VDSR:
    """Load an MLflow model URI (``models:/asym_vdsr@champion``) as a VDSR network in eval mode on the CPU.

    Only the model's asymsr checkpoint artifact is read, with ``torch.load(weights_only=True)``;
    a registered model without one (a pickled ``mlflow.pytorch`` model, say) is refused, never
    unpickled, since loading a pickle runs whatever code its author put in it.

    Raises:
        CheckpointError: the URI names no model, or a model that is not an asymsr checkpoint.
        TrackingUnavailable: the tracking store does not answer.
    """
    import tempfile

    from asymsr.mlops.serving import CHECKPOINT_ARTIFACT
    from asymsr.nn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint

    store = tracking_uri()
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        raise CheckpointError(  # reading must not create an empty store as a side effect
            f"{uri}: no model store here: {store.removeprefix('sqlite:///')} does not exist; set MLFLOW_TRACKING_URI "
            "to your tracking server or store, or run from the project that holds mlruns/"
        )
    connect()
    refusal = f"{uri}: not an asymsr model (no weights-only checkpoint artifact); refusing to unpickle it"
    with tempfile.TemporaryDirectory(prefix="asymsr-model-") as scratch:
        try:
            description = yaml.safe_load(_download(uri, "MLmodel", scratch).read_text())
            relative = description["flavors"]["python_function"]["artifacts"][CHECKPOINT_ARTIFACT]["path"]
        except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):  # not the layout log_model writes
            raise CheckpointError(refusal) from None
        # only the layout log_model writes: no "..", no %-escapes that the artifact store would decode
        if not isinstance(relative, str) or not CHECKPOINT_PATH.fullmatch(relative):
            raise CheckpointError(refusal)
        path = _download(uri, relative, scratch).resolve()
        if Path(scratch).resolve() not in path.parents or not path.is_file():
            raise CheckpointError(refusal)
        return model_from_checkpoint(load_checkpoint(path), uri)


def _download(uri: str, relative: str, scratch: str) -> Path:
    """One file of a logged model (``relative`` to its folder) into ``scratch``, quietly."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from asymsr.nn.checkpoint import CheckpointError

    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # one small file: no bar
    try:
        base = uri
        if uri.startswith("models:/"):  # models:/m-<id> (a LoggedModel) takes no sub-path: go to its storage
            from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

            base = ModelsArtifactRepository.get_underlying_uri(uri)
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"{base.rstrip('/')}/{relative}", dst_path=scratch)
        )
    except (MlflowException, OSError) as error:
        problem = getattr(error, "message", None) or str(error)
        raise CheckpointError(f"{uri}: cannot read {relative} from {tracking_uri()}: {problem}") from None
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


@contextmanager
def system_metrics(run_id: str) -> Iterator[None]:
    """Sample this machine's CPU, memory, disk, network (and GPUs, where ``pynvml`` sees them)
    into ``run_id`` as MLflow system metrics (``system/cpu_utilization_percentage``, ...) while
    the block runs, every 10 s unless ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` says otherwise.
    The same as ``mlflow.start_run(log_system_metrics=True)``, for runs this project logs through
    a client rather than the fluent API."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # resume_logging: tuning, training and a retried attempt continue the run's steps, not restart at 0
    monitor = SystemMetricsMonitor(run_id, sampling_interval=10, resume_logging=True, tracking_uri=tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


RESUME_SLOTS = ("resume/a", "resume/b")
RESUME_MARKER = "epoch.json"


def _resume_slots(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The complete resume slots of ``run_id``: slot -> the epoch its marker names."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="asymsr-resume-") as scratch:
        for slot in RESUME_SLOTS:
            if not any(item.path.endswith(RESUME_MARKER) for item in client.list_artifacts(run_id, slot)):
                continue
            marker = client.download_artifacts(run_id, f"{slot}/{RESUME_MARKER}", scratch)
            found[slot] = int(json.loads(Path(marker).read_text())["epoch"])
    return found


def mirror_for_resume(client: MlflowClient, run_id: str, out: Path, names: Sequence[str], epoch: int) -> None:
    """Upload the files a resume of ``out`` reads to one of the run's two resume slots, the
    slot's marker last. The slot written is the older one, never the one holding the latest
    complete copy, so a task killed during an upload leaves that copy whole for its retry."""
    slots = _resume_slots(client, run_id)
    target = min(RESUME_SLOTS, key=lambda slot: slots.get(slot, -1))
    for name in names:
        client.log_artifact(run_id, str(out / name), target)
    with tempfile.TemporaryDirectory(prefix="asymsr-resume-") as scratch:
        marker = Path(scratch) / RESUME_MARKER
        marker.write_text(json.dumps({"epoch": epoch}))
        client.log_artifact(run_id, str(marker), target)


def restore_for_resume(parent_id: str, arch: str, out: Path, names: Sequence[str]) -> int | None:
    """Put the latest copy that :func:`mirror_for_resume` left in the architecture's run under
    ``parent_id`` into ``out``; returns its epoch, or None when there is none (a first attempt)."""
    client = connect()
    run_id = child_run(client, parent_id, arch).info.run_id
    slots = _resume_slots(client, run_id)
    if not slots:
        return None
    slot = max(slots, key=slots.__getitem__)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asymsr-resume-", dir=out) as scratch:
        for name in names:  # downloaded beside, then moved into place: no half-written checkpoint in out
            os.replace(client.download_artifacts(run_id, f"{slot}/{name}", scratch), out / name)
    return slots[slot]


def restored_from_run(stage: str, parent_id: str | None, arch: str, out: Path, names: Sequence[str]) -> bool:
    """``--resume-from-run`` of train and compress: :func:`restore_for_resume`, said on stdout
    when it finds something; whether it did."""
    if parent_id is None:
        raise ValueError(f"--resume-from-run: needs a parent run (--parent-run-id or ${PARENT_RUN_ENV})")
    epoch = restore_for_resume(parent_id, arch, out, names)
    if epoch is not None:  # said even with --quiet: a resumed run is not a fresh one
        print(f"{stage}: continuing after epoch {epoch}, from the state an earlier attempt left in MLflow")
    return epoch is not None


@contextmanager
def live_training_log(
    parent_id: str, arch: str, train_config: Mapping[str, Any], mirror: tuple[Path, Sequence[str]] | None = None
) -> Iterator[Callable[[EpochRecord], None]]:
    """Log a training run live into the architecture's child run under ``parent_id``.

    Yields the ``on_epoch_end`` callback for :func:`asymsr.training.loop.train`; the child run gets
    the resolved config as parameters, each epoch's :func:`epoch_metrics` and the machine's
    :func:`system_metrics` while training runs; with ``mirror`` (``out`` and the files a resume
    reads), those files after each epoch (:func:`mirror_for_resume`). It ends FINISHED,
    or FAILED if training raises (``asymsr register`` later reopens it to add the rest).
    """
    from mlflow.exceptions import MlflowException

    client = connect()
    run_id = child_run(client, parent_id, arch).info.run_id
    client.update_run(run_id, status="RUNNING")  # again, after tuning or an attempt that was killed
    log_params(client, run_id, {"arch": arch, **train_config})

    def on_epoch_end(record: EpochRecord) -> None:
        log_metrics(client, run_id, epoch_metrics(record), step=record.epoch)
        if mirror is not None:  # called after the epoch's checkpoint is written
            try:
                mirror_for_resume(client, run_id, *mirror, epoch=record.epoch)
            except (MlflowException, OSError) as error:  # the other slot still holds a whole, older copy
                print(f"asymsr: warning: epoch {record.epoch} not mirrored for resume: {error}", file=sys.stderr)

    try:
        with system_metrics(run_id):
            yield on_epoch_end
    except BaseException:
        finish(client, run_id, "FAILED")
        raise
    finish(client, run_id)


def write_run_context(path: str | os.PathLike[str], parent_id: str, uri: str | None = None) -> None:
    """Save the tracking URI and parent run id for later pipeline steps (a small JSON file)."""
    from asymsr.util.fs import write_json

    write_json(path, {"tracking_uri": uri or tracking_uri(), "parent_run_id": parent_id})


def use_run_context(path: str | os.PathLike[str]) -> str:
    """Point this process at the context's tracking store (``MLFLOW_TRACKING_URI``); returns the parent run id."""
    context = json.loads(Path(path).read_text())
    os.environ["MLFLOW_TRACKING_URI"] = context["tracking_uri"]
    return context["parent_run_id"]
