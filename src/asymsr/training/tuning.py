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
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asymsr.mlops import tracking
from asymsr.schema.params import TUNABLE, TrainConfig, TuneConfig
from asymsr.schema.records import StudySummary
from asymsr.training.loop import TrainingDiverged, train
from asymsr.util.fs import sha256_file, write_json
from asymsr.util.images import list_images

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE = "sqlite:///runs/optuna/optuna.db"
ERROR_ATTR = "error"
SURPLUS_ATTR = "surplus"
STORAGE_ATTEMPTS = 3
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial

__all__ = ["TUNABLE", "tune"]


def data_version(patches: str | os.PathLike[str], val: str | os.PathLike[str]) -> str:
    """12 hex digits identifying the patch set (its manifest) and the validation images."""
    digest = hashlib.sha256(sha256_file(Path(patches) / "manifest.json").encode())
    for path in list_images(val):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:12]


def study_name(arch: str, settings: TuneConfig, base: TrainConfig, patches: Path, val: Path) -> str:
    """``<arch>-data<12 hex>-obj<8 hex>`` (see the module docstring)."""
    objective = hashlib.sha256(json.dumps(settings.objective_key(arch, base), sort_keys=True, default=str).encode())
    return f"{arch}-data{data_version(patches, val)}-obj{objective.hexdigest()[:8]}"


def open_storage(settings: TuneConfig) -> optuna.storages.RDBStorage:
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


def _sampler(settings: TuneConfig, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler; ``offset`` shifts the seed so that a resumed study or a second worker
    does not draw the same parameters again (a fresh first run is reproducible: offset 0)."""
    import optuna

    seed = settings.seed + offset
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, settings.trials // 2)))


def _pruner(settings: TuneConfig) -> optuna.pruners.BasePruner:
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
    settings: TuneConfig
    patches: str
    val: str
    study: str
    tracking_uri: str
    experiment_id: str
    tuning_run_id: str
    deadline: float | None
    threads: int | None
    worker: int = 0  # index among this machine's workers

    def trial_config(self, sampled: dict[str, Any]) -> TrainConfig:
        """The base config with the trial's parameters and the trial budget."""
        budget = {"epochs": self.settings.epochs, "steps_per_epoch": self.settings.steps_per_epoch}
        return TrainConfig.model_validate({**self.base, **sampled, **budget})


def _surplus(trial: optuna.Trial, budget: int) -> bool:
    """Whether ``budget`` counted or running trials are numbered before this one (parallel workers)."""
    from optuna.trial import TrialState

    ahead = [
        t
        for t in trial.study.get_trials(deepcopy=False)
        if t.number < trial.number and (counts(t) or t.state == TrialState.RUNNING)
    ]
    return len(ahead) >= budget


def _trial_run(job: _Job, client: Any, trial: optuna.Trial, sampled: dict[str, Any]) -> str:
    """The trial's MLflow run, nested under the study's run; returns its id."""
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
    tracking.log_params(client, run.info.run_id, sampled)
    return run.info.run_id


def _objective(job: _Job, client: Any) -> Any:
    import optuna

    def objective(trial: optuna.Trial) -> float:
        if _surplus(trial, job.settings.trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("surplus: the study already holds its budget of trials")
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        sampled = {name: dim.suggest(trial, name) for name, dim in job.settings.space.for_arch(job.arch).items()}
        config = job.trial_config(sampled)
        run_id = _trial_run(job, client, trial, sampled)

        def report(result: Any) -> None:
            value = result.val_psnr
            trial.report(value, result.epoch)
            tracking.log_metrics(client, run_id, {"val_psnr": value, "train_loss": result.loss}, step=result.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {result.epoch}: validation PSNR {value:.3f} dB")

        state, status = "FAIL", "FAILED"
        try:
            value = _train_trial(job, config, trial.number, report)
            tracking.log_metrics(client, run_id, {"value": value}, step=job.settings.epochs)
            state, status = "COMPLETE", "FINISHED"
            return value
        except optuna.TrialPruned:
            state, status = "PRUNED", "FINISHED"
            raise
        except Exception as error:  # recorded on the trial; the study goes on (see `catch` in _work)
            trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {error}")
            raise
        finally:
            client.set_tag(run_id, "optuna.state", state)
            tracking.finish(client, run_id, status)

    return objective


def _train_trial(job: _Job, config: TrainConfig, number: int, report: Any) -> float:
    """Train one trial in a scratch folder; returns its final validation PSNR (dB)."""
    with tempfile.TemporaryDirectory(prefix=f"asymsr-trial-{number}-") as scratch:
        history = train(config, job.patches, scratch, val=job.val, progress=False, on_epoch_end=report)
    value = history[-1].val_psnr
    if value is None or not math.isfinite(value):
        raise TrainingDiverged(f"validation PSNR is {value}")
    return value


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
    settings: TuneConfig,
    patches: str | os.PathLike[str],
    val: str | os.PathLike[str],
    out: str | os.PathLike[str],
    workers: int = 1,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    parent_run_id: str | None = None,
) -> StudySummary:
    """Run (or resume) the study of ``arch`` to its budget; write the outputs; return ``study.json``'s record.

    Args:
        base: the architecture's resolved training config; trials override the ``space``
            fields and the budget.
        settings: the ``tune`` block (its space for ``arch``: the common dimensions, then ``arch``'s).
        workers: processes on this machine sharing the study (other machines may add theirs).
        parent_run_id: nest the trials under this pipeline run's architecture run; without
            it they nest under a run of this study (tag ``optuna.study``), reused on resume.

    Raises:
        ValueError: empty search space, or fewer than one worker.
        RuntimeError: no trial completed, so there are no best parameters.
    """
    if not settings.space.for_arch(arch):
        raise ValueError(f"tune: the search space for {arch} is empty; declare tune.space in params.yaml")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    patches, val, out = Path(patches), Path(val), Path(out)
    name = study_name(arch, settings, base, patches, val)
    study = _open_study(name, arch, settings)
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
    with tracking.system_metrics(run_id):  # the machine while the trials run, on the run they nest under
        _run_workers(job, workers)
    return _write_outputs(study, name, arch, settings, out, client, run_id)


def _open_study(name: str, arch: str, settings: TuneConfig) -> optuna.Study:
    """Create or load the study; trials whose worker died are failed (not counted, replaced)."""
    import optuna

    storage = open_storage(settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True, sampler=_sampler(settings)
    )
    study.set_user_attr("arch", arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    _fail_silent_trials(study, storage, settings.grace_s)
    return study


def _fail_silent_trials(study: optuna.Study, storage: optuna.storages.RDBStorage, grace_s: float) -> None:
    """Fail RUNNING trials that never sent a heartbeat and started more than ``grace_s`` ago.

    ``fail_stale_trials`` only judges trials by their last heartbeat, so a worker killed between
    creating its trial and the heartbeat thread's first beat leaves a trial RUNNING for ever, and
    it would hold a place in the budget. A live worker beats within milliseconds of the trial's
    start, so a trial older than the grace period with no beat has lost its worker.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages._rdb import models  # no public API lists heartbeats; optuna is pinned
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    session = storage.scoped_session()
    try:
        now = datetime.now()  # the clock optuna stamps datetime_start with (naive local time)
        running = (
            session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        silent = [
            t.trial_id for t in running if not t.heartbeats and (now - t.datetime_start).total_seconds() > grace_s
        ]
    finally:
        storage.scoped_session.remove()
    for trial_id in silent:
        try:
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker opening the study failed it first
            pass


def _run_workers(job: _Job, workers: int) -> None:
    """Run the job in this process, or in ``workers`` spawned processes sharing the study."""
    if workers == 1:
        _work(job)
        return
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
        raise RuntimeError(f"tune workers {failed} exited with an error; the study {job.study!r} can be resumed")


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
    study: optuna.Study, name: str, arch: str, settings: TuneConfig, out: Path, client: Any, run_id: str
) -> StudySummary:
    from optuna.trial import TrialState

    trials = counted_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {name!r}: no trial completed ({len(trials)} counted); nothing to choose from")
    best = max(complete, key=lambda t: t.value)
    plots = _plots(study, out)
    summary = StudySummary(
        study=name,
        arch=arch,
        storage=_redacted(settings.storage or DEFAULT_STORAGE),
        trials=settings.trials,
        counted=len(trials),
        states={state: sum(1 for t in trials if t.state.name == state) for state in ("COMPLETE", "PRUNED", "FAIL")},
        best_trial=best.number,
        best_value_db=best.value,
        best_params=best.params,
        mlflow_run_id=run_id,
        plots=sorted(plots),
    )
    write_json(out / "best_params.json", best.params)
    summary.write(out / "study.json")
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

    from asymsr.util.fs import atomic_path

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
