"""``asymsr tune``: an Optuna study of one architecture's training hyper-parameters.

* Objective: the validation PSNR (dB, mean over the validation scales; never a test set)
  after a short, fixed training budget (``epochs`` x ``steps_per_epoch``). Every epoch
  reports its validation PSNR, and the pruner (median, Hyperband or none) stops poor trials.
* Study: one per architecture and data version, named
  ``<arch>-data<12 hex>-obj<8 hex>``: a hash of the patch set and validation images, and one
  of the objective (search space, budget, base config), so that a changed objective starts a
  new study instead of mixing trials. ``trials`` and ``timeout_s`` are not part of the name:
  raising ``trials`` continues the study.
* Storage: ``sqlite:///runs/optuna/optuna.db`` by default, or any SQLAlchemy URL
  (``postgresql://...``), so that N processes or pods share one study. Trials send heartbeats;
  a trial whose worker died is marked FAIL after ``grace_s`` seconds when the study resumes.
* Budget: a study holds exactly ``trials`` *counted* trials: COMPLETE, PRUNED, or FAIL with an
  error recorded (a NaN loss, out of memory). A trial lost with its worker does not count and
  is replaced; finished ones are never repeated. Parallel workers stay within the budget: a
  trial that finds ``trials`` counted or running trials numbered before it stops at once as
  PRUNED with the user attribute ``surplus`` (it does not count).
* Tracking: every trial is a nested MLflow run under the architecture's run (parameters,
  per-epoch ``val_psnr``, final value, tag ``optuna.state``).
* Outputs (``--out`` folder): ``best_params.json`` (training config overrides that
  ``asymsr train --config`` consumes), ``study.json`` (study name, storage, counts, best
  value), ``optimization_history.png`` and (with two or more completed trials) ``param_importances.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from asymsr import tracking
from asymsr.fsutil import write_json
from asymsr.images import list_images
from asymsr.sources import sha256_file
from asymsr.training import TrainConfig, TrainingDiverged, train

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE = "sqlite:///runs/optuna/optuna.db"
TUNABLE = ("lr", "optimizer", "momentum", "weight_decay", "clip_mode", "clip", "batch_size", "loss", "lr_gamma")
ERROR_ATTR = "error"
SURPLUS_ATTR = "surplus"
STORAGE_ATTEMPTS = 3
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial


@dataclass(frozen=True)
class SearchDimension:
    """One tunable training setting.

    Attributes:
        type: ``float`` / ``int`` (between ``low`` and ``high``, on a log scale if ``log``)
            or ``categorical`` (one of ``choices``).
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TuneSettings:
    """A study's budget, sampler, pruner and storage (the ``tune`` block of params.yaml).

    Attributes:
        trials: counted trials the study should hold in the end.
        timeout_s: stop starting new trials after this many seconds (None = no limit).
        epochs, steps_per_epoch: the training budget of every trial.
        sampler: ``tpe`` or ``random``, seeded with ``seed``.
        pruner: ``median``, ``hyperband`` or ``none``; ``startup_trials`` trials are never
            pruned, nor any trial before epoch ``warmup_epochs`` + 1.
        storage: SQLAlchemy URL; None = :data:`DEFAULT_STORAGE`.
        heartbeat_s, grace_s: trial heartbeat interval and the silence after which a
            running trial is considered dead (seconds).
        space: training-config field -> :class:`SearchDimension`.
    """

    trials: int = 4
    timeout_s: float | None = None
    epochs: int = 3
    steps_per_epoch: int | None = 10
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = 1
    warmup_epochs: int = 0
    storage: str | None = None
    heartbeat_s: int = 10
    grace_s: int = 30
    space: dict[str, SearchDimension] = field(default_factory=dict)

    def objective_key(self, base: TrainConfig) -> dict[str, Any]:
        """What defines the objective (not the budget of trials)."""
        return {
            "space": {name: vars(dim) for name, dim in sorted(self.space.items())},
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "base": {k: v for k, v in base.to_dict().items() if k not in self.space and k != "device"},
        }


def data_version(patches: str | os.PathLike[str], val: str | os.PathLike[str]) -> str:
    """12 hex digits identifying the patch set (its manifest) and the validation images."""
    digest = hashlib.sha256(sha256_file(Path(patches) / "manifest.json").encode())
    for path in list_images(val):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:12]


def study_name(arch: str, settings: TuneSettings, base: TrainConfig, patches: Path, val: Path) -> str:
    objective = hashlib.sha256(json.dumps(settings.objective_key(base), sort_keys=True, default=str).encode())
    return f"{arch}-data{data_version(patches, val)}-obj{objective.hexdigest()[:8]}"


def open_storage(settings: TuneSettings) -> optuna.storages.RDBStorage:
    """The study storage with heartbeats on; a local SQLite file gets its folder created."""
    import optuna

    url = settings.storage or DEFAULT_STORAGE
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    attempt = 1
    while True:  # pods starting together race to create the schema: retry a few times
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=settings.heartbeat_s,
                    grace_period=settings.grace_s,
                    engine_kwargs={"pool_pre_ping": True},
                )
        except Exception:
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(attempt)
            attempt += 1


def _sampler(settings: TuneSettings, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler; ``offset`` shifts the seed so that a resumed study or a second worker
    does not draw the same parameters again (a fresh first run is reproducible: offset 0)."""
    import optuna

    seed = settings.seed + offset
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, settings.trials // 2)))


def _pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)


def counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a finished trial counts toward the budget (see the module docstring)."""
    from optuna.trial import TrialState

    if trial.user_attrs.get(SURPLUS_ATTR):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [trial for trial in study.get_trials(deepcopy=False) if counts(trial)]


@dataclass(frozen=True)
class _Job:
    """Everything a worker process needs (picklable)."""

    arch: str
    base: dict[str, Any]
    settings: TuneSettings
    patches: str
    val: str
    study: str
    tracking_uri: str
    experiment_id: str
    tuning_run_id: str
    deadline: float | None
    threads: int | None
    worker: int = 0  # index among this machine's workers


def _objective(job: _Job, client: Any) -> Any:
    import optuna
    from optuna.trial import TrialState

    def objective(trial: optuna.Trial) -> float:
        ahead = [
            t
            for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number and (counts(t) or t.state == TrialState.RUNNING)
        ]
        if len(ahead) >= job.settings.trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("surplus: the study already holds its budget of trials")
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        sampled = {name: dim.suggest(trial, name) for name, dim in job.settings.space.items()}
        config = TrainConfig.from_dict(
            {**job.base, **sampled, "epochs": job.settings.epochs, "steps_per_epoch": job.settings.steps_per_epoch}
        )
        run = client.create_run(
            job.experiment_id,
            run_name=f"trial {trial.number}",
            tags={
                "mlflow.parentRunId": job.tuning_run_id,
                tracking.ROLE_TAG: "trial",
                tracking.ARCH_TAG: job.arch,
                "optuna.study": job.study,
                "optuna.trial": str(trial.number),
            },
        )
        run_id = run.info.run_id
        tracking.log_params(client, run_id, sampled)

        def report(result: Any) -> None:
            value = result.val_psnr
            trial.report(value, result.epoch)
            tracking.log_metrics(client, run_id, {"val_psnr": value, "train_loss": result.loss}, step=result.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {result.epoch}: validation PSNR {value:.3f} dB")

        state, status = "FAIL", "FAILED"
        try:
            with tempfile.TemporaryDirectory(prefix=f"asymsr-trial-{trial.number}-") as scratch:
                history = train(config, job.patches, scratch, val=job.val, progress=False, on_epoch_end=report)
            value = history[-1].val_psnr
            if value is None or not math.isfinite(value):
                raise TrainingDiverged(f"validation PSNR is {value}")
            tracking.log_metrics(client, run_id, {"value": value}, step=job.settings.epochs)
            state, status = "COMPLETE", "FINISHED"
            return value
        except optuna.TrialPruned:
            state, status = "PRUNED", "FINISHED"
            raise
        except Exception as error:  # recorded on the trial; the study goes on (see `catch` below)
            trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {error}")
            raise
        finally:
            client.set_tag(run_id, "optuna.state", state)
            tracking.finish(client, run_id, status)

    return objective


def _work(job: _Job) -> None:
    """One worker: run trials of the shared study until it holds its budget or time is up."""
    import optuna
    from optuna.trial import TrialState

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = tracking.connect(job.tracking_uri)
    storage = open_storage(job.settings)
    existing = len(optuna.load_study(study_name=job.study, storage=storage).trials)
    study = optuna.load_study(
        study_name=job.study,
        storage=storage,
        sampler=_sampler(job.settings, offset=existing + 7919 * job.worker),
        pruner=_pruner(job.settings),
    )
    objective = _objective(job, client)
    while True:
        trials = study.get_trials(deepcopy=False)
        busy = sum(1 for t in trials if counts(t) or t.state == TrialState.RUNNING)
        if busy >= job.settings.trials or (job.deadline is not None and time.time() >= job.deadline):
            return
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)


def tune(
    arch: str,
    base: TrainConfig,
    settings: TuneSettings,
    patches: str | os.PathLike[str],
    val: str | os.PathLike[str],
    out: str | os.PathLike[str],
    workers: int = 1,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study of ``arch`` to its budget; write the outputs; return ``study.json``'s content.

    Args:
        base: the architecture's resolved training config; trials override the ``space``
            fields and the budget.
        workers: processes on this machine sharing the study (other machines may add theirs).
        parent_run_id: nest the trials under this pipeline run's architecture run; without
            it they nest under a run of this study (tag ``optuna.study``), reused on resume.

    Raises:
        ValueError: empty search space, or a space field that the training config lacks.
        RuntimeError: no trial completed, so there are no best parameters.
    """
    import optuna

    if not settings.space:
        raise ValueError(f"tune: the search space for {arch} is empty; declare tune.space in params.yaml")
    unknown = sorted(set(settings.space) - set(TUNABLE))
    if unknown:
        raise ValueError(f"tune.space: {unknown} cannot be tuned; tunable: {list(TUNABLE)}")
    if workers < 1 or settings.trials < 1:
        raise ValueError(f"workers and trials must be >= 1, got {workers} and {settings.trials}")
    patches, val, out = Path(patches), Path(val), Path(out)
    name = study_name(arch, settings, base, patches, val)
    storage = open_storage(settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True, sampler=_sampler(settings)
    )
    study.set_user_attr("arch", arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials whose worker died: FAIL, not counted, replaced

    client = tracking.connect()
    run_id = _tuning_run(client, experiment, arch, name, parent_run_id)
    job = _Job(
        arch=arch,
        base=base.to_dict(),
        settings=settings,
        patches=str(patches),
        val=str(val),
        study=name,
        tracking_uri=tracking.tracking_uri(),
        experiment_id=client.get_run(run_id).info.experiment_id,
        tuning_run_id=run_id,
        deadline=time.time() + settings.timeout_s if settings.timeout_s else None,
        threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
    )
    if workers == 1:
        _work(job)
    else:
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_work, args=(replace(job, worker=index),), name=f"tune-worker-{index}")
            for index in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"tune workers {failed} exited with an error; the study {name!r} can be resumed")
    return _write_outputs(study, name, settings, out, client, run_id)


def _tuning_run(client: Any, experiment: str, arch: str, name: str, parent_run_id: str | None) -> str:
    """The run that the trials nest under (see :func:`tune`)."""
    if parent_run_id:
        return tracking.child_run(client, parent_run_id, arch).info.run_id
    experiment_id = tracking.ensure_experiment(client, experiment)
    query = f"tags.`optuna.study` = '{name}' and tags.`{tracking.ROLE_TAG}` = 'tuning'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"tune {arch}",
        tags={tracking.ROLE_TAG: "tuning", tracking.ARCH_TAG: arch, "optuna.study": name},
    )
    return run.info.run_id


def _write_outputs(
    study: optuna.Study, name: str, settings: TuneSettings, out: Path, client: Any, run_id: str
) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = counted_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {name!r}: no trial completed ({len(trials)} counted); nothing to choose from")
    best = max(complete, key=lambda t: t.value)
    summary = {
        "study": name,
        "storage": _redacted(settings.storage or DEFAULT_STORAGE),
        "trials": settings.trials,
        "counted": len(trials),
        "states": {state: sum(1 for t in trials if t.state.name == state) for state in ("COMPLETE", "PRUNED", "FAIL")},
        "best_trial": best.number,
        "best_value_db": best.value,
        "best_params": best.params,
        "mlflow_run_id": run_id,
    }
    plots = _plots(study, out)
    summary["plots"] = sorted(plots)
    write_json(out / "best_params.json", best.params)
    write_json(out / "study.json", summary)
    tracking.log_params(client, run_id, {f"best.{key}": value for key, value in best.params.items()})
    tracking.log_metrics(client, run_id, {"best_val_psnr": best.value, "counted_trials": len(trials)})
    for path in [out / "study.json", out / "best_params.json", *plots.values()]:
        client.log_artifact(run_id, str(path), artifact_path="tuning")
    return summary


def _plots(study: optuna.Study, out: Path) -> dict[str, Path]:
    """Optimisation history and (with 2+ completed trials) parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as optuna_plots

    from asymsr.fsutil import atomic_path

    written: dict[str, Path] = {}
    makers = {"optimization_history": optuna_plots.plot_optimization_history}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) >= 2:
        makers["param_importances"] = optuna_plots.plot_param_importances
    for key, maker in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib backend of optuna.visualization is "experimental"
            axes = maker(study)
        figure = axes.figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        path = out / f"{key}.png"
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        pyplot.close(figure)
        written[key] = path
    return written


def _redacted(url: str) -> str:
    """A storage URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: nothing to hide
        return url


def settings_from_params(block: Mapping[str, Any], arch: str) -> TuneSettings:
    """A :class:`TuneSettings` from the validated ``tune`` block (common space, then ``arch``'s)."""
    values = {key: value for key, value in block.items() if key != "workers"}  # a run-time choice, not the study's
    space_block = values.pop("space", {}) or {}
    space = {**space_block.get("common", {}), **space_block.get("arch", {}).get(arch, {})}
    dims = {
        name: SearchDimension(**{**spec, "choices": tuple(spec.get("choices", ()))}) for name, spec in space.items()
    }
    return TuneSettings(**values, space=dims)
