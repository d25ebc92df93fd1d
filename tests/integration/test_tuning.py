"""`asymsr tune` on real Optuna storages (SQLite files, and the PostgreSQL server for the
2-worker test) with trials nested in a real MLflow store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from asymsr.mlops import tracking
from asymsr.schema.params import TuneConfig
from asymsr.training.loop import TrainConfig
from asymsr.training.tuning import SURPLUS_ATTR, WORKER_ATTR, counted_trials, tune
from tests.conftest import TINY, smooth_image

optuna = pytest.importorskip("optuna")
pytest.importorskip("mlflow")

GOOD_LR, BAD_LR = 0.03, 1e-7  # with Adam on the tiny model: learns in a few steps / stays at its initial output


@pytest.fixture
def val_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    folder.mkdir()
    Image.fromarray(smooth_image(64, 64, seed=7)).save(folder / "v.png")
    return folder


def base_config(**changes) -> TrainConfig:
    values = dict(arch="vdsr", arch_overrides=TINY, batch_size=4, optimizer="adam", device="cpu", val_crop=48)
    return TrainConfig(**{**values, **changes})


def load(out: Path, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=json.loads((out / "study.json").read_text())["study"], storage=storage)


def trial_runs(out: Path) -> list:
    client = tracking.connect()
    study = json.loads((out / "study.json").read_text())["study"]
    return [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")
        if run.data.tags.get(tracking.ROLE_TAG) == "trial"
    ]


@pytest.mark.slow
def test_pruning_stops_trials_in_a_bad_region_and_trials_nest_in_mlflow(
    sqlite_store: str, patch_folder: Path, val_folder: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = TuneConfig(
        trials=6,
        epochs=3,
        steps_per_epoch=2,
        sampler="random",
        seed=0,  # RandomSampler(0) draws bad, good, bad, bad, good, good
        storage=storage,
        space={"common": {"lr": {"type": "categorical", "choices": [GOOD_LR, BAD_LR]}}},
    )
    summary = tune("vdsr", base_config(), settings, patch_folder, val_folder, tmp_path / "out")
    trials = counted_trials(load(tmp_path / "out", storage))
    assert len(trials) == summary.counted == 6
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "no trial was pruned"
    assert all(t.params["lr"] == BAD_LR and len(t.intermediate_values) < 3 for t in pruned)
    assert all(t.params["lr"] == GOOD_LR for t in trials if t.state.name == "COMPLETE" and t.number > 0)
    assert summary.best_params == {"lr": GOOD_LR}
    assert json.loads((tmp_path / "out" / "best_params.json").read_text()) == {"lr": GOOD_LR}
    assert Image.open(tmp_path / "out" / "optimization_history.png").size[0] > 300

    runs = trial_runs(tmp_path / "out")
    assert sorted(int(run.data.tags["optuna.trial"]) for run in runs) == [t.number for t in trials]
    states = {int(run.data.tags["optuna.trial"]): run.data.tags["optuna.state"] for run in runs}
    assert states == {t.number: t.state.name for t in trials}
    parents = {run.data.tags["mlflow.parentRunId"] for run in runs}
    assert len(parents) == 1
    tuning_run = tracking.connect().get_run(parents.pop())
    assert tuning_run.data.tags[tracking.ROLE_TAG] == "tuning" and tuning_run.data.params["best.lr"] == str(GOOD_LR)

    again = tune("vdsr", base_config(), settings, patch_folder, val_folder, tmp_path / "out")  # resume: nothing to do
    assert again == summary and len(load(tmp_path / "out", storage).trials) == 6


def test_a_failing_trial_is_recorded_and_the_study_goes_on(
    sqlite_store: str, patch_folder: Path, val_folder: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = TuneConfig(
        trials=3,
        epochs=1,
        steps_per_epoch=2,
        sampler="random",
        storage=storage,
        space={"common": {"lr": {"type": "categorical", "choices": [1e12]}}},  # SGD without clipping: NaN at step 2
    )
    config = base_config(optimizer="sgd", clip_mode="none")
    with pytest.raises(RuntimeError, match="no trial completed"):
        tune("vdsr", config, settings, patch_folder, val_folder, tmp_path / "out")
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    assert all("TrainingDiverged" in t.user_attrs["error"] for t in study.trials)


def tune_command(tmp_path: Path, patch_folder: Path, val_folder: Path, storage: str, trials: int) -> list[str]:
    params = {
        "profile": "test",
        "datasets": {"train": "builtin:skimage/train", "val": "builtin:skimage/val", "test": "builtin:skimage/test"},
        "data": {"train": "train", "val": "val", "test": ["test"]},
        "tune": {
            "trials": trials,
            "epochs": 3,
            "steps_per_epoch": 15,
            "sampler": "random",
            "pruner": "none",
            "storage": storage,
            "heartbeat_s": 1,
            "grace_s": 2,
            "space": {"common": {"lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}}},
        },
        "train": {"common": {"batch_size": 4, "optimizer": "adam", "device": "cpu", "val_crop": 48,
                             "arch_overrides": TINY}},
        "evaluate": {},
        "register": {"experiment": "tune-test"},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return [sys.executable, "-m", "asymsr.cli", "tune", "--params", str(tmp_path / "params.yaml"), "--arch", "vdsr",
            "--patches", str(patch_folder), "--val", str(val_folder), "--out", str(tmp_path / "out")]  # fmt: skip


def trial_states(database: Path) -> dict[int, str]:
    """Trial number -> state, read with plain sqlite3 (opening an Optuna storage would race the
    worker process that is creating the schema)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return dict(connection.execute("SELECT number, state FROM trials").fetchall())
    except sqlite3.Error:  # not created yet
        return {}


@pytest.mark.slow
def test_a_killed_study_resumes_to_its_budget_without_repeats(
    sqlite_store: str, patch_folder: Path, val_folder: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = tune_command(tmp_path, patch_folder, val_folder, storage, trials=4)
    worker = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill it in the middle of its second trial
        states = trial_states(tmp_path / "optuna.db")
        if "COMPLETE" in states.values() and "RUNNING" in states.values():
            break
        time.sleep(0.2)
    else:
        worker.kill()
        pytest.fail("the study never reached its second trial:\n" + worker.communicate()[0].decode()[-3000:])
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    finished_before_kill = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    time.sleep(3)  # longer than grace_s: the dead worker's trial is stale now

    done = subprocess.run(command, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    counted = counted_trials(study)
    assert len(counted) == 4 and "4 of 4 trials" in done.stdout
    lost = [t for t in study.trials if t not in counted]
    assert [t.state.name for t in lost] == ["FAIL"] and "error" not in lost[0].user_attrs
    for number, value in finished_before_kill.items():  # finished trials are kept, not run again
        assert study.trials[number].value == value
    assert len(study.trials) == 5
    assert len({t.params["lr"] for t in counted}) == 4, "a resumed study drew the same parameters again"


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(
    sqlite_store: str, postgres_database: str, patch_folder: Path, val_folder: Path, tmp_path: Path
) -> None:
    settings = TuneConfig(
        trials=6,
        epochs=2,
        steps_per_epoch=2,
        storage=postgres_database,
        heartbeat_s=2,
        grace_s=10,
        space={
            "common": {
                "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True},
            }
        },
    )
    summary = tune("vdsr", base_config(), settings, patch_folder, val_folder, tmp_path / "out", workers=2)
    study = load(tmp_path / "out", postgres_database)
    counted = counted_trials(study)
    assert len(counted) == 6 and summary.counted == 6
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert all(t.user_attrs.get(SURPLUS_ATTR) for t in study.trials if t not in counted)
    workers = {t.user_attrs[WORKER_ATTR] for t in counted}
    assert len(workers) == 2, f"trials ran in {workers}"
    complete = [t for t in counted if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value)
    assert summary.best_trial == best.number and summary.best_value_db == best.value == study.best_value
    runs = trial_runs(tmp_path / "out")
    assert sorted(int(run.data.tags["optuna.trial"]) for run in runs) == sorted(t.number for t in counted)
    assert {run.info.status for run in runs} == {"FINISHED"}
