"""A Kubeflow train task whose node is lost (its process killed with SIGKILL mid-training) is
retried by `set_retry`, continues from the checkpoint its first attempt mirrored to the MLflow
run, and ends with exactly the weights of an uninterrupted run (kfp.local, SubprocessRunner)."""

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_image_sets

kfp = pytest.importorskip("kfp")
pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6


def small_pipeline() -> Any:
    """params -> tracking -> data -> patches -> one tune trial -> train (retried once, no backoff)."""
    from components import asymsr_components as c
    from kfp import dsl
    from pipelines.asym_vdsr import retried

    @dsl.pipeline(name="retry-check")
    def pipeline(overrides: str, mlflow_tracking_uri: str, optuna_storage: str) -> None:
        params = c.resolve_params(profile="quick", overrides_json=overrides).set_caching_options(False)
        tracking = c.start_tracking(
            params=params.outputs["params"], mlflow_tracking_uri=mlflow_tracking_uri, run_name="retry"
        ).set_caching_options(False)
        data = c.fetch_and_validate(params=params.outputs["params"])
        patches = c.prepare_patches(params=params.outputs["params"], data=data.outputs["data"])
        inputs = dict(params=params.outputs["params"], patches=patches.outputs["patches"], data=data.outputs["data"])
        study = c.tune(arch="vdsr", optuna_storage=optuna_storage, n_trials=1, run=tracking.outputs["run"], **inputs)
        train = c.train(arch="vdsr", study=study.outputs["study"], run=tracking.outputs["run"], **inputs)
        retried(train, retries=1, backoff={"backoff_duration": "0s"}).set_caching_options(False)

    return pipeline


def train_processes() -> list[int]:
    """Pids of the Python processes running the train component (kfp's executor_main)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        flag = b"--function_to_execute"
        if b"kfp.dsl.executor_main" in words and flag in words and words[words.index(flag) + 1 :][:1] == [b"train"]:
            found.append(int(entry.name))
    return found


class NodeLoss(threading.Thread):
    """Kills the train task (SIGKILL, as a lost node) once its first epoch is mirrored to MLflow."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(daemon=True)
        self.tracking_uri, self.killed, self.stop = tracking_uri, [], threading.Event()
        self.errors: list[str] = []

    def mirrored(self) -> bool:
        from mlflow import MlflowClient

        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name("asymsr-quick")
        if experiment is None:
            return False
        runs = client.search_runs(
            [experiment.experiment_id], "tags.`asymsr.arch` = 'vdsr' and tags.`asymsr.role` = 'architecture'"
        )
        slots = [client.list_artifacts(run.info.run_id, slot) for run in runs for slot in ("resume/a", "resume/b")]
        return any(item.path.endswith("epoch.json") for items in slots for item in items)

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            try:
                pids = train_processes()
                if pids and self.mirrored():
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    self.killed.extend(pids)
            except Exception as error:  # noqa: BLE001 (a busy store, a process gone between reads): look again
                self.errors.append(repr(error))
            time.sleep(0.1)


def run_pipeline(tmp: Path, lose_node: bool) -> tuple[dict[str, Any], list[int], list[str]]:
    """The small pipeline in a fresh store; returns the trained weights, the pids killed and the watcher's errors."""
    import torch
    from kfp import local

    images = tiny_image_sets(tmp / "images")
    overrides = {
        "datasets": {name: str(images / name) for name in ("tiny_train", "tiny_val", "tiny_test")},
        "data": {"train": "tiny_train", "val": "tiny_val", "test": ["tiny_test"]},
        "validate": {"expected_counts": {}, "patch_sample": 1000},
        "prepare": {"patch_size": 21, "stride": 21},
        "tune": {"trials": 1, "epochs": 1, "steps_per_epoch": 2},
        "train": {"common": {"epochs": EPOCHS, "steps_per_epoch": 12, "batch_size": 4, "val_crop": 48}},
    }
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    killer = NodeLoss(tracking_uri)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp / "outputs"))
    if lose_node:
        killer.start()
    try:
        small_pipeline()(
            overrides=json.dumps(overrides),
            mlflow_tracking_uri=tracking_uri,
            optuna_storage=f"sqlite:///{tmp / 'optuna.db'}",
        )
    finally:
        killer.stop.set()
    (model,) = (tmp / "outputs").glob("*/train/model/model.pt")
    return torch.load(model, weights_only=True, map_location="cpu"), killer.killed, killer.errors


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_task_killed_once_is_retried_and_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setenv("ASYMSR_PROFILES", str(REPO / "profiles"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ASYMSR_PARENT_RUN_ID", raising=False)
    lost, killed, errors = run_pipeline(tmp_path / "lost", lose_node=True)
    log = capfd.readouterr()
    text = log.out + log.err
    assert killed, f"the train task finished before it could be killed (watcher errors: {errors[-3:]})"
    attempts = [line for line in text.splitlines() if "Executing task" in line and "'train'" in line]
    assert len(attempts) == 2, "the killed train task was not retried (once)"
    resumed = [line for line in text.splitlines() if "train: continuing after epoch" in line]
    assert len(resumed) == 1, "the retry did not continue from the mirrored checkpoint"
    assert 1 <= int(re.search(r"after epoch (\d+)", resumed[0]).group(1)) < EPOCHS

    uninterrupted, none, _ = run_pipeline(tmp_path / "whole", lose_node=False)
    assert not none
    assert lost["arch"] == uninterrupted["arch"] and lost.keys() == uninterrupted.keys()
    for key, value in uninterrupted["model"].items():
        assert torch.equal(lost["model"][key], value), f"{key} differs from the uninterrupted run's"
