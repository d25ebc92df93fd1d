"""`dvc repro` of the real dvc.yaml in a temporary copy of the repository, on a tiny profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import smooth_image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_params(images: Path) -> dict:
    return {
        "datasets": {name: str(images / name) for name in ("tiny_train", "tiny_val", "tiny_test")},
        "data": {"train": "tiny_train", "val": "tiny_val", "test": "tiny_test"},
        "prepare": {"patch_size": 21, "stride": 21, "scales": [2, 3, 4], "downsize_factors": [1.0]},
        "train": {
            "common": {
                "epochs": 2,
                "steps_per_epoch": 2,
                "batch_size": 4,
                "optimizer": "adam",
                "lr": 0.001,
                "device": "cpu",
                "val_crop": 48,
            },
            "arch": {"vdsr": {}, "asym_vdsr": {}},
        },
        "evaluate": {"scales": [2, 3, 4], "latency_size": 32},
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC repository holding this project's dvc.yaml and sources, with tiny image folders."""
    if shutil.which("dvc", path=str(BIN)) is None:
        pytest.skip("dvc is not installed in this environment (`make install-dev` installs it)")
    images = tmp_path / "images"
    seed = 0
    for name, count in (("tiny_train", 3), ("tiny_val", 1), ("tiny_test", 2)):
        (images / name).mkdir(parents=True)
        for index in range(count):
            seed += 1
            Image.fromarray(smooth_image(72 + 8 * index, 88, seed=seed)).save(images / name / f"{index}.png")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(images)))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    return root


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.slow
def test_dvc_repro_end_to_end_then_no_op(project):
    started = time.perf_counter()
    run(["dvc", "repro"], project)
    assert time.perf_counter() - started < 180
    for arch in ("vdsr", "asym_vdsr"):
        assert (project / "models" / arch / "model.pt").is_file()
        summary = json.loads((project / "metrics" / f"{arch}.json").read_text())
        assert set(summary["tiny_test"]) == {"x2", "x3", "x4"}
        assert summary["efficiency"]["arch"] == arch and summary["efficiency"]["latency_input"] == [1, 1, 32, 32]
        history = json.loads((project / "models" / arch / "history.json").read_text())
        assert [record["epoch"] for record in history] == [1, 2]
    assert "| tiny_test | x4 |" in (project / "reports" / "results.md").read_text()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    assert "metrics/asym_vdsr.json" in json.dumps(shown)

    started = time.perf_counter()
    second = run(["dvc", "repro"], project)
    assert time.perf_counter() - started < 5
    assert "Data and pipelines are up to date" in second.stdout

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["latency_size"] = 24  # only the evaluation stages read it
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = run(["dvc", "status", "--json"], project).stdout
    changed = set(json.loads(status))
    assert changed == {"evaluate_bicubic", "evaluate@vdsr", "evaluate@asym_vdsr"}

    params["evaluate"]["latency_size"] = 32
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], project)
    experiment = run(["dvc", "exp", "run", "-S", "evaluate.latency_size=16"], project)
    assert "Stage 'train@vdsr' didn't change, skipping" in experiment.stdout
    summary = json.loads((project / "metrics" / "vdsr.json").read_text())
    assert summary["efficiency"]["latency_input"] == [1, 1, 16, 16]


def test_wrong_parameter_fails_before_any_work(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["batch_size"] = "sixteen"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "batch_size='sixteen' has type str" in result.stderr + result.stdout
    assert not (project / "data").exists() and not (project / "models").exists()


def test_corrupt_image_stops_prepare_and_nothing_downstream_runs(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    Path(params["datasets"]["tiny_train"], "zz_broken.png").write_bytes(b"not an image")
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "zz_broken.png: cannot decode image" in result.stderr + result.stdout
    assert not (project / "data" / "patches").exists() and not (project / "models").exists()


def test_missing_source_folder_is_named(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    missing = params["datasets"]["tiny_val"] + "_gone"
    params["datasets"]["tiny_val"] = missing
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert f"image folder not found: {missing}" in result.stderr + result.stdout
    assert not (project / "models").exists()
