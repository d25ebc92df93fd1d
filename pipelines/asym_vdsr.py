"""The asymsr pipeline on Kubeflow Pipelines (v2): the stages of ``dvc.yaml`` as components.

    resolve params -> start MLflow parent run -> fetch + validate -> prepare
        -> bicubic baseline
        -> for each architecture (in parallel): tune workers (in parallel, one shared study)
           -> collect the study -> train -> evaluate
        -> compress the trained VDSR into an Asym_VDSR -> evaluate it
        -> report (table, plots, crops) -> register (MLflow, registry, promotion gate on the
           better Asym_VDSR: trained or compressed)

Every component runs one stage of :mod:`asymsr.stages`, the same function as the matching
``asymsr`` command in ``dvc.yaml``; this file holds wiring, resources and secrets only. The
promotion gate is the profile's ``register`` block (override it with ``params_overrides``, e.g.
``{"register": {"max_psnr_drop": 0.3, "use_stages": false}}``).

``python -m pipelines.asym_vdsr`` compiles it to ``pipelines/asym_vdsr.yaml`` (committed; a
test fails when it is stale). Credentials never travel as parameters: tasks that talk to S3 or
MLflow read them from the Kubernetes secrets named below (``kfp.kubernetes.use_secret_as_env``).
"""

import sys
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `components` when run as a script

from components import asymsr_components as c  # noqa: E402

SPEC = Path(__file__).with_suffix(".yaml")
S3_SECRET = "asymsr-s3"  # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3
MLFLOW_SECRET = "asymsr-mlflow"  # keys: MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD
OPTUNA_SECRET = "asymsr-optuna"  # key: OPTUNA_STORAGE (a postgresql:// URL with its password)
GPU_NODE_LABEL = "nvidia.com/gpu.present"


def _credentials(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """S3 and MLflow credentials from secrets (optional: a public dataset and an open server need none)."""
    kubernetes.use_secret_as_env(
        task,
        S3_SECRET,
        {key: key for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3")},
        optional=True,
    )
    kubernetes.use_secret_as_env(
        task,
        MLFLOW_SECRET,
        {key: key for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")},
        optional=True,
    )
    return task


def _on_gpu(task: dsl.PipelineTask, accelerator: str, gpus: int, cpu: str, memory: str) -> dsl.PipelineTask:
    """Request ``gpus`` accelerators (0: a CPU-only task) with CPU and memory, on GPU nodes."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_accelerator_type(accelerator).set_accelerator_limit(gpus)
    kubernetes.add_node_selector(task, GPU_NODE_LABEL, "true")
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    return task


# Spot and preemptible GPU nodes go away: the long tasks are retried, with backoff (60 s, 120 s).
# train and compress continue from the last epoch they mirrored to their MLflow run
# (`resume_from_run`), tune workers from the shared study, evaluate simply runs again.
RETRIES = 2
RETRY_BACKOFF = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}


def retried(task: dsl.PipelineTask, retries: int = RETRIES, backoff: Any = RETRY_BACKOFF) -> dsl.PipelineTask:
    """``task`` retried ``retries`` times after a failure, waiting as ``backoff`` says."""
    return task.set_retry(num_retries=retries, **backoff)


def build_pipeline(cluster: bool = True) -> Any:
    """The pipeline; ``cluster=False`` leaves out the GPU, CPU and memory requests and the GPU
    node placement, which ``kfp.local`` ignores and cannot resolve inside loops (the only difference)."""

    def on_gpu(task: dsl.PipelineTask, accelerator: Any, gpus: Any) -> dsl.PipelineTask:
        return _on_gpu(task, accelerator, gpus, cpu="4", memory="16G") if cluster else task

    def tuner(task: dsl.PipelineTask, accelerator: Any, gpus: Any) -> dsl.PipelineTask:
        kubernetes.use_secret_as_env(task, OPTUNA_SECRET, {"OPTUNA_STORAGE": "OPTUNA_STORAGE"}, optional=True)
        return retried(on_gpu(_credentials(task), accelerator, gpus))

    @dsl.pipeline(name="asym-vdsr", description="Train, tune, compare and register VDSR and Asym_VDSR.")
    def asym_vdsr_pipeline(
        profile: str = "quick",
        params_overrides: str = "{}",
        architectures: list = ["vdsr", "asym_vdsr"],  # noqa: B006 (KFP parameters are literals)
        n_trials: int = 0,
        trial_parallelism: int = 2,
        optuna_storage: str = "",
        mlflow_tracking_uri: str = "",
        accelerator: str = "nvidia.com/gpu",
        gpus_per_task: int = 1,
        run_name: str = "kubeflow",
    ) -> None:
        """Parameters:

        profile: ``quick`` or ``paper`` (``profiles/`` in the image); ``params_overrides``: JSON
        merged into it, e.g. ``{"datasets": {"t91": "s3://bucket/T91"}, "tune": {"epochs": 3}}``
        (data source URIs live there; components fetch them themselves). ``n_trials``: trials per
        study (0: the profile's). ``trial_parallelism``: tune pods per architecture sharing one
        study through ``optuna_storage`` (a SQLAlchemy URL; empty: the ``OPTUNA_STORAGE`` of the
        secret, else the profile's local SQLite, which only suits one pod). ``mlflow_tracking_uri``:
        empty for the image's environment. ``accelerator``/``gpus_per_task``: what tune, train and evaluate request.
        """
        params = c.resolve_params(profile=profile, overrides_json=params_overrides).set_caching_options(False)
        tracking = _credentials(
            c.start_tracking(
                params=params.outputs["params"], mlflow_tracking_uri=mlflow_tracking_uri, run_name=run_name
            )
        ).set_caching_options(False)
        data = _credentials(c.fetch_and_validate(params=params.outputs["params"]))
        data.set_cpu_request("2").set_memory_request("4G")
        patches = c.prepare_patches(params=params.outputs["params"], data=data.outputs["data"])
        patches.set_cpu_request("2").set_memory_request("8G")
        baseline = c.evaluate_bicubic(params=params.outputs["params"], data=data.outputs["data"])

        study_inputs = dict(
            params=params.outputs["params"],
            patches=patches.outputs["patches"],
            data=data.outputs["data"],
            optuna_storage=optuna_storage,
            n_trials=n_trials,
            run=tracking.outputs["run"],
        )
        # Tune workers: trial_parallelism pods per architecture, all sharing the architecture's study.
        slots = c.tune_slots(architectures=architectures, count=trial_parallelism)
        with dsl.ParallelFor(slots.output) as slot:
            worker = tuner(c.tune(arch=slot, **study_inputs), accelerator, gpus_per_task)

        with dsl.ParallelFor(architectures) as arch:
            # Run once more after the workers, the study finds its budget complete and writes the best parameters.
            study = tuner(c.tune(arch=arch, **study_inputs).after(worker), accelerator, gpus_per_task)
            model = c.train(
                params=params.outputs["params"],
                arch=arch,
                patches=patches.outputs["patches"],
                data=data.outputs["data"],
                study=study.outputs["study"],
                run=tracking.outputs["run"],
            )
            evaluation = c.evaluate_model(
                params=params.outputs["params"], arch=arch, data=data.outputs["data"], model=model.outputs["model"]
            )
            for task in (model, evaluation):
                retried(_credentials(on_gpu(task, accelerator, gpus_per_task)))

        compressed = c.compress(
            params=params.outputs["params"],
            models=dsl.Collected(model.outputs["model"]),
            patches=patches.outputs["patches"],
            data=data.outputs["data"],
            run=tracking.outputs["run"],
        )
        compressed_evaluation = c.evaluate_model(
            params=params.outputs["params"],
            arch="asym_vdsr_compressed",
            data=data.outputs["data"],
            model=compressed.outputs["model"],
        )
        for task in (compressed, compressed_evaluation):
            retried(_credentials(on_gpu(task, accelerator, gpus_per_task)))
        extra = dict(
            compressed=compressed.outputs["model"], compressed_evaluation=compressed_evaluation.outputs["evaluation"]
        )
        comparison = c.report(
            params=params.outputs["params"],
            data=data.outputs["data"],
            models=dsl.Collected(model.outputs["model"]),
            evaluations=dsl.Collected(evaluation.outputs["evaluation"]),
            baseline=baseline.outputs["evaluation"],
            **extra,
        )
        c.register(
            params=params.outputs["params"],
            data=data.outputs["data"],
            models=dsl.Collected(model.outputs["model"]),
            evaluations=dsl.Collected(evaluation.outputs["evaluation"]),
            studies=dsl.Collected(study.outputs["study"]),
            comparison=comparison.outputs["comparison"],
            **extra,
            run=tracking.outputs["run"],
        ).set_caching_options(False)

    return asym_vdsr_pipeline


asym_vdsr_pipeline = build_pipeline()


def compile_spec(path: Path = SPEC) -> Path:
    """Compile :func:`asym_vdsr_pipeline` to ``path`` (YAML); returns ``path``."""
    compiler.Compiler().compile(asym_vdsr_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(f"compiled {compile_spec()}")
