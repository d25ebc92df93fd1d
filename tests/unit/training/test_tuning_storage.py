"""The study storage: trials whose worker died are failed, whatever moment it died at."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from asymsr.schema.params import TuneConfig
from asymsr.training.tuning import _open_study, open_storage


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    settings = TuneConfig(storage=f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1, grace_s=2)
    study = _open_study("s", "vdsr", settings)
    silent = study.ask()  # RUNNING, and no heartbeat: its worker died right after creating it
    beating = study.ask()
    storage = open_storage(settings)
    time.sleep(2.5)
    storage.record_heartbeat(beating._trial_id)  # a live worker elsewhere, beating now

    study = _open_study("s", "vdsr", settings)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {silent.number: TrialState.FAIL, beating.number: TrialState.RUNNING}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_fresh_trial_without_a_heartbeat_yet_is_left_running(tmp_path: Path) -> None:
    settings = TuneConfig(storage=f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1, grace_s=30)
    study = _open_study("s", "vdsr", settings)
    young = study.ask()  # a worker on another machine that has not beaten yet
    study = optuna.load_study(study_name="s", storage=open_storage(settings))
    _open_study("s", "vdsr", settings)
    assert study.trials[young.number].state == TrialState.RUNNING
