"""The Kubeflow pipeline: the committed spec is current, the cluster settings are in it, and the
whole pipeline runs through kfp.local on a tiny profile (`python -m pipelines.local`): in this
environment (SubprocessRunner), and in containers of the offline image (DockerRunner) against
the cluster's kind of services on the host (MLflow server on PostgreSQL with S3 artifacts, Optuna
on PostgreSQL, datasets on S3), where it must give the same registry, runs and PSNR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import new_postgres_database, tiny_image_sets
from tests.docker_engine import docker_engine

kfp = pytest.importorskip("kfp")
pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "pipelines" / "asym_vdsr.yaml"


def test_committed_spec_is_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.asym_vdsr import compile_spec

    monkeypatch.delenv("ASYMSR_IMAGE", raising=False)
    fresh = compile_spec(tmp_path / "asym_vdsr.yaml").read_text()
    assert SPEC.read_text() == fresh, "pipelines/asym_vdsr.yaml is stale: run `python -m pipelines.asym_vdsr`"


def resources(executor: dict) -> dict:
    return executor["container"].get("resources", {})


def test_spec_requests_gpus_from_parameters_and_credentials_from_secrets() -> None:
    documents = list(yaml.safe_load_all(SPEC.read_text()))
    spec, platform = documents[0], documents[1]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {"profile", "params_overrides", "n_trials", "trial_parallelism", "optuna_storage", "gpus_per_task"} <= set(
        parameters
    )
    assert "max_psnr_drop" not in parameters  # the gate is the profile's register block, as under DVC
    assert not [name for name in parameters if any(word in name for word in ("password", "secret", "key", "token"))]
    containers = spec["deploymentSpec"]["executors"]
    gpu_executors = [name for name, body in containers.items() if "accelerator" in resources(body)]
    assert {name.removeprefix("exec-") for name in gpu_executors} >= {
        "tune",
        "tune-2",
        "train",
        "evaluate-model",
        "compress",
    }
    for name in gpu_executors:
        accelerator = containers[name]["container"]["resources"]["accelerator"]
        assert "resourceCount" in accelerator and "resourceType" in accelerator  # from the pipeline parameters
    # spot and preemptible nodes: the long tasks are retried with backoff, the others are not
    tasks = [spec["root"]["dag"]["tasks"]] + [c["dag"]["tasks"] for c in spec["components"].values() if "dag" in c]
    retries = {name: task.get("retryPolicy") for dag in tasks for name, task in dag.items()}
    retried = {name for name, policy in retries.items() if policy}
    assert retried == {"tune", "tune-2", "train", "evaluate-model", "compress", "evaluate-model-2"}, retried
    for name in retried:
        assert retries[name]["maxRetryCount"] == 2 and retries[name]["backoffDuration"] == "60s"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"asymsr-s3", "asymsr-mlflow"} <= {s["secretName"] for s in executors["exec-train"]["secretAsEnv"]}
    assert "asymsr-optuna" in {s["secretName"] for s in executors["exec-tune"]["secretAsEnv"]}
    assert executors["exec-train"]["nodeSelector"] and executors["exec-train"]["tolerations"]


# Both local runs are compared, so they share one worker (Makefile: --dist loadgroup).
pytestmark_group = pytest.mark.xdist_group("kfp_local_pipeline")
TINY_SETS = ("tiny_train", "tiny_val", "tiny_test")
SAMPLING = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # seconds: the tiny runs last a few, MLflow's default is 10
PSNR_TOLERANCE_DB = 0.01  # containers vs this environment: same torch wheel, row kernel prebuilt vs compiled


def tiny_overrides(datasets: dict[str, str]) -> dict[str, Any]:
    return {
        "datasets": datasets,
        "data": {"train": "tiny_train", "val": "tiny_val", "test": ["tiny_test"]},
        "validate": {"expected_counts": {}, "patch_sample": 1000},
        "prepare": {"patch_size": 21, "stride": 21},
        # Two tune workers share each study and race for trial numbers (in parallel under kfp.local, as on
        # a cluster), so which lr a trial draws depends on timing. With the one tuned setting pinned, every
        # trial trains the same network and the two runs can be compared number for number.
        "tune": {
            "trials": 2,
            "epochs": 2,
            "steps_per_epoch": 2,
            "space": {"common": {"lr": {"type": "categorical", "choices": [0.001]}}},
        },
        "train": {"common": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "val_crop": 48}},
        "compress": {
            "refit_patches": 8,
            "steps": 2,
            "finetune": {"batch_size": 4, "steps_per_epoch": 1, "val_crop": 48},
        },
        "evaluate": {"latency_size": 32},
        # Any tiny Asym_VDSR is within 100 dB of its VDSR and smaller, and there is no champion yet:
        # the gate must promote one, whatever the few training steps gave.
        "register": {"max_psnr_drop": 100.0},
    }


def run_local(runner: list[str], root: Path, datasets: dict[str, str], tracking_uri: str, storage: str,
              env: dict[str, str], timeout: float) -> str:  # fmt: skip
    """``python -m pipelines.local`` as a user runs it; returns its log (stdout and stderr)."""
    command = [
        sys.executable, "-m", "pipelines.local", *runner, "--pipeline-root", str(root),
        "--param", "profile=quick", "--param", f"params_overrides={json.dumps(tiny_overrides(datasets))}",
        "--param", "trial_parallelism=2", "--param", f"optuna_storage={storage}",
        "--param", f"mlflow_tracking_uri={tracking_uri}", "--param", "run_name=local",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    log = done.stdout + done.stderr
    first_error = log.find("Traceback")  # the failing task's own traceback, not kfp's summary after it
    assert done.returncode == 0, log[first_error : first_error + 6000] if first_error >= 0 else log[-6000:]
    return log


def outcome(tracking_uri: str, storage: str) -> dict[str, Any]:
    """What a pipeline run left in MLflow and Optuna, read back through their clients."""
    import optuna
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    asym = {v.tags["asymsr.run"]: v for v in client.search_model_versions("name='asym_vdsr'")}
    experiment = client.get_experiment_by_name("asymsr-quick")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`asymsr.role` = 'pipeline'")
    parent = parents[0].info.run_id
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    by_arch = {child.data.tags["asymsr.arch"]: child for child in children}
    trials = {
        arch: sorted(
            t.data.tags["optuna.trial"]
            for t in client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{child.info.run_id}'"
            )
        )
        for arch, child in by_arch.items()
    }
    return {
        "asym_versions": {run: (v.tags["origin"], v.tags["decision"]) for run, v in asym.items()},
        "rejected_reasons": [v.tags["decision_reason"] for v in asym.values() if v.tags["decision"] == "rejected"],
        "champion": client.get_model_version_by_alias("asym_vdsr", "champion").tags["asymsr.run"],
        "parent_of_promoted": {v.tags["parent_run_id"] == parent for v in asym.values()},
        "vdsr_versions": len(client.search_model_versions("name='vdsr'")),
        "parents": [p.info.status for p in parents],
        "reports": {item.path for item in client.list_artifacts(parent, "report")},
        "children": sorted(by_arch),
        "trials": trials,
        "loss_steps": {
            arch: [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
            for arch, child in by_arch.items()
        },
        "studies": sorted((s.study_name.split("-")[0], s.n_trials) for s in optuna.get_all_study_summaries(storage)),
        "system_metrics": sorted(
            arch for arch, child in by_arch.items() if "system/cpu_utilization_percentage" in child.data.metrics
        ),
        "psnr": {
            arch: {key: value for key, value in child.data.metrics.items() if key.endswith("_psnr")}
            for arch, child in by_arch.items()
        },
    }


@pytest.fixture(scope="module")
def subprocess_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole pipeline in this Python environment (SubprocessRunner, no venv); its outcome."""
    tmp = tmp_path_factory.mktemp("kfp-subprocess")
    images = tiny_image_sets(tmp / "images")
    tracking_uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp / 'optuna.db'}"
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["ASYMSR_PROFILES"] = str(REPO / "profiles")
    env[SAMPLING] = "1"
    datasets = {name: str(images / name) for name in TINY_SETS}
    run_local(["--runner", "subprocess"], tmp / "outputs", datasets, tracking_uri, storage, env, timeout=1200)
    return outcome(tracking_uri, storage)


def check_outcome(result: dict[str, Any]) -> None:
    """What every complete run of the pipeline must leave."""
    # trained and compressed: both candidates of asym_vdsr, one promoted, the other not this run's best
    assert result["asym_versions"].keys() == {"asym_vdsr", "asym_vdsr_compressed"}
    assert result["asym_versions"]["asym_vdsr_compressed"][0] == "compressed"
    assert result["asym_versions"]["asym_vdsr"][0] == "trained"
    assert sorted(decision for _, decision in result["asym_versions"].values()) == ["promoted", "rejected"]
    assert len(result["rejected_reasons"]) == 1 and "not this run's best" in result["rejected_reasons"][0]
    assert result["asym_versions"][result["champion"]][1] == "promoted"
    assert result["parent_of_promoted"] == {True} and result["vdsr_versions"] == 1
    assert result["parents"] == ["FINISHED"]
    assert {"report/results.md", "report/psnr_vs_params.png", "report/visual_x4.png"} <= result["reports"]
    assert result["children"] == ["asym_vdsr", "asym_vdsr_compressed", "vdsr"]
    # trials nest under the architecture's run; curves were logged live, the distillation's too
    assert result["trials"] == {"asym_vdsr": ["0", "1"], "asym_vdsr_compressed": [], "vdsr": ["0", "1"]}
    assert result["loss_steps"] == {"asym_vdsr": [1, 2], "asym_vdsr_compressed": [1, 2], "vdsr": [1, 2]}
    assert result["studies"] == [("asym_vdsr", 2), ("vdsr", 2)], "two workers per study ran more or fewer trials"
    assert all(result["psnr"].values()), "a child run without test PSNR"
    assert result["system_metrics"] == ["asym_vdsr", "asym_vdsr_compressed", "vdsr"]  # tune, train, compress


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 20 tasks, each a fresh Python process
@pytestmark_group
def test_whole_pipeline_runs_locally(subprocess_run: dict[str, Any]) -> None:
    check_outcome(subprocess_run)


@pytest.fixture(scope="module")
def offline_image() -> Iterator[tuple[str, str]]:
    """``make image-offline`` in a Docker engine of its own (or the running one); yields (DOCKER_HOST, tag).
    The bases and the wheelhouse come from the machine's cache when an earlier run left them."""
    with docker_engine() as host:
        tag = "asymsr:kfp-local-test"
        env = dict(os.environ, DOCKER_HOST=host)
        started = time.monotonic()
        built = subprocess.run(["make", "image-offline", f"IMAGE={tag}"], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=1800)  # fmt: skip
        assert built.returncode == 0, (built.stdout + built.stderr)[-6000:]
        print(f"make image-offline: {time.monotonic() - started:.0f} s\n{built.stdout[-1500:]}")
        yield host, tag


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the image build (cold: minutes) and 20 containers
@pytestmark_group
def test_pipeline_in_containers_matches_the_subprocess_run(
    offline_image: tuple[str, str],
    subprocess_run: dict[str, Any],
    mlflow_server: str,
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    import boto3

    host, tag = offline_image
    images = tiny_image_sets(tmp_path / "images")  # the same bytes as the subprocess run's, served from S3
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="sr-data")
    for name in TINY_SETS:
        for image in sorted((images / name).iterdir()):
            s3.upload_file(str(image), "sr-data", f"{name}/{image.name}")
    datasets = {name: f"s3://sr-data/{name}" for name in TINY_SETS}
    # Under /tmp, not pytest's tmp_path: the image's user (uid 1000) must be able to enter every folder above it.
    scratch = Path(tempfile.mkdtemp(prefix="asymsr-kfp-", dir="/tmp"))
    scratch.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "ASYMSR_PROFILES")}
    env["DOCKER_HOST"] = host
    env[SAMPLING] = "1"
    passed = ["--env", "AWS_ACCESS_KEY_ID", "--env", "AWS_SECRET_ACCESS_KEY", "--env", "AWS_DEFAULT_REGION",
              "--env", "AWS_ENDPOINT_URL_S3", "--env", SAMPLING]  # fmt: skip
    try:
        with new_postgres_database() as storage:
            log = run_local(["--runner", "docker", "--image", tag, *passed], scratch / "outputs", datasets,
                            mlflow_server, storage, env, timeout=1500)  # fmt: skip
            result = outcome(mlflow_server, storage)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    tasks = log.count("Executing task")
    assert tasks >= 20 and log.count(f"Found image '{tag}'") == tasks, "a task ran on another image, or was pulled"
    assert "pip install" not in log and "Successfully installed" not in log
    check_outcome(result)
    psnr, expected = result.pop("psnr"), dict(subprocess_run)
    assert result == {key: value for key, value in expected.items() if key != "psnr"}
    expected_psnr = expected["psnr"]
    assert {arch: sorted(metrics) for arch, metrics in psnr.items()} == {
        arch: sorted(metrics) for arch, metrics in expected_psnr.items()
    }
    worst = max(abs(psnr[arch][key] - expected_psnr[arch][key]) for arch in psnr for key in psnr[arch])
    print(f"containers vs subprocess: largest PSNR difference {worst:.2e} dB")
    assert worst <= PSNR_TOLERANCE_DB
