"""The Kubeflow pipeline: the committed spec is current, the cluster settings are in it, and the
whole pipeline runs locally through kfp.local (SubprocessRunner, no venv) on a tiny profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_image_sets

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
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"asymsr-s3", "asymsr-mlflow"} <= {s["secretName"] for s in executors["exec-train"]["secretAsEnv"]}
    assert "asymsr-optuna" in {s["secretName"] for s in executors["exec-tune"]["secretAsEnv"]}
    assert executors["exec-train"]["nodeSelector"] and executors["exec-train"]["tolerations"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 20 tasks, each a fresh Python process
def test_whole_pipeline_runs_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    from kfp import local
    from mlflow import MlflowClient
    from pipelines.asym_vdsr import build_pipeline

    images = tiny_image_sets(tmp_path / "images")
    overrides = {
        "datasets": {name: str(images / name) for name in ("tiny_train", "tiny_val", "tiny_test")},
        "data": {"train": "tiny_train", "val": "tiny_val", "test": ["tiny_test"]},
        "validate": {"expected_counts": {}, "patch_sample": 1000},
        "prepare": {"patch_size": 21, "stride": 21},
        "tune": {"trials": 2, "epochs": 2, "steps_per_epoch": 2},
        "train": {"common": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "val_crop": 48}},
        "compress": {
            "refit_patches": 8,
            "steps": 2,
            "finetune": {"batch_size": 4, "steps_per_epoch": 1, "val_crop": 48},
        },
        "evaluate": {"latency_size": 32},
        # Any tiny Asym_VDSR is within 100 dB of its VDSR and smaller, and there is no champion yet:
        # the gate must promote it, whatever the few training steps gave.
        "register": {"max_psnr_drop": 100.0},
    }
    tracking_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv("ASYMSR_PROFILES", str(REPO / "profiles"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "outputs"))
    run = build_pipeline(cluster=False)(
        profile="quick",
        params_overrides=json.dumps(overrides),
        trial_parallelism=2,
        optuna_storage=storage,
        mlflow_tracking_uri=tracking_uri,
        run_name="local",
    )
    del run  # kfp.local raises if any task fails

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    asym = {v.tags["asymsr.run"]: v for v in client.search_model_versions("name='asym_vdsr'")}
    assert set(asym) == {"asym_vdsr", "asym_vdsr_compressed"}  # trained and compressed: both candidates
    assert asym["asym_vdsr_compressed"].tags["origin"] == "compressed" and asym["asym_vdsr"].tags["origin"] == "trained"
    promoted = [v for v in asym.values() if v.tags["decision"] == "promoted"]
    rejected = [v for v in asym.values() if v.tags["decision"] == "rejected"]
    assert len(promoted) == 1 and len(rejected) == 1 and "not this run's best" in rejected[0].tags["decision_reason"]
    assert client.get_model_version_by_alias("asym_vdsr", "champion").version == promoted[0].version
    asym = promoted
    assert len(client.search_model_versions("name='vdsr'")) == 1
    experiment = client.get_experiment_by_name("asymsr-quick")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`asymsr.role` = 'pipeline'")
    assert [p.info.status for p in parents] == ["FINISHED"]
    parent = parents[0].info.run_id
    assert asym[0].tags["parent_run_id"] == parent
    reports = {item.path for item in client.list_artifacts(parent, "report")}  # as dvc.yaml's report stage writes
    assert {"report/results.md", "report/psnr_vs_params.png", "report/visual_x4.png"} <= reports
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    by_run = {child.data.tags["asymsr.arch"]: child for child in children}
    assert sorted(by_run) == ["asym_vdsr", "asym_vdsr_compressed", "vdsr"]
    compressed = by_run.pop("asym_vdsr_compressed")  # its distillation curve was logged live too
    assert [m.step for m in client.get_metric_history(compressed.info.run_id, "train_loss")] == [1, 2]
    for child in by_run.values():  # trials nest under the architecture's run; curves were logged live
        trials = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{child.info.run_id}'"
        )
        assert sorted(t.data.tags["optuna.trial"] for t in trials) == ["0", "1"]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")] == [1, 2]
    studies = optuna.get_all_study_summaries(storage)
    assert sorted(s.study_name.split("-")[0] for s in studies) == ["asym_vdsr", "vdsr"]
    assert all(s.n_trials == 2 for s in studies), "two workers per study ran more or fewer trials than asked"
    assert os.path.isdir(tmp_path / "outputs")
