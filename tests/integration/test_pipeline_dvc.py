"""`dvc repro` of the real dvc.yaml in a temporary copy of the repository, on a tiny profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import tiny_image_sets

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tiny_params(images: Path) -> dict:
    return {
        "profile": "tiny",
        "datasets": {name: str(images / name) for name in ("tiny_train", "tiny_val", "tiny_test")},
        "data": {"train": "tiny_train", "val": "tiny_val", "test": ["tiny_test"]},
        "validate": {"min_size": 41, "expected_counts": {"tiny_train": 3}, "patch_sample": 1000},
        "prepare": {"patch_size": 21, "stride": 21, "scales": [2, 3, 4], "downsize_factors": [1.0]},
        "tune": {
            "trials": 2,
            "epochs": 2,
            "steps_per_epoch": 2,
            "space": {"common": {"lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}}},
        },
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
        "compress": {
            "refit_patches": 8,
            "steps": 2,
            "finetune": {"batch_size": 4, "steps_per_epoch": 1, "device": "cpu", "val_crop": 48},
        },
        "evaluate": {"scales": [2, 3, 4], "latency_size": 32},
        "register": {
            "experiment": "asymsr-tiny",
            "max_psnr_drop": 0.2,
            "candidate_runs": ["asym_vdsr", "asym_vdsr_compressed"],
        },
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC repository holding this project's dvc.yaml and sources, with tiny image folders."""
    if shutil.which("dvc", path=str(BIN)) is None:
        pytest.skip("dvc is not installed in this environment (`make install-dev` installs it)")
    images = tiny_image_sets(tmp_path / "images")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copy(REPO / ".gitignore", root)
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
@pytest.mark.timeout(1200)  # the pipeline with compression, twice, and an experiment: about 8 min on 2 cores
def test_dvc_repro_end_to_end_then_no_op(project):
    run(["dvc", "repro"], project)
    compression = json.loads((project / "models" / "asym_vdsr_compressed" / "compression.json").read_text())
    assert compression["teacher"] == "models/vdsr/model.pt" and compression["finished"]
    for arch in ("vdsr", "asym_vdsr", "asym_vdsr_compressed"):
        assert (project / "models" / arch / "model.pt").is_file()
        summary = json.loads((project / "metrics" / f"{arch}.json").read_text())
        assert summary["schema_version"] == 1 and set(summary["scores"]["tiny_test"]) == {"x2", "x3", "x4"}
        assert summary["efficiency"]["arch"] == arch.removesuffix("_compressed")
        assert summary["efficiency"]["latency_input"] == [1, 1, 32, 32]
        history = json.loads((project / "models" / arch / "history.json").read_text())
        assert [record["epoch"] for record in history["epochs"]] == [1, 2]
    assert "| tiny_test | x4 |" in (project / "reports" / "results.md").read_text()
    gains = json.loads((project / "reports" / "psnr_gain.json").read_text())
    assert {row["model"] for row in gains} == {"vdsr", "asym_vdsr", "asym_vdsr_compressed"} and len(gains) == 9
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    assert "metrics/headline.json" in json.dumps(shown) and "metrics/vdsr.json" not in json.dumps(shown)
    headline = json.loads((project / "metrics" / "headline.json").read_text())
    summaries = {arch: json.loads((project / "metrics" / f"{arch}.json").read_text()) for arch in ("bicubic", "vdsr")}
    assert set(headline) == {"mean_psnr", "params", "latency_ms"}  # few, named columns for `dvc exp show`
    assert set(headline["mean_psnr"]) == {"bicubic", "vdsr", "asym_vdsr", "asym_vdsr_compressed"}
    vdsr_scores = [score["psnr"] for by_scale in summaries["vdsr"]["scores"].values() for score in by_scale.values()]
    assert abs(headline["mean_psnr"]["vdsr"] - sum(vdsr_scores) / len(vdsr_scores)) < 1e-4
    assert headline["params"] == {"vdsr": 664704, "asym_vdsr": 443520, "asym_vdsr_compressed": 443520}
    for name in ("psnr_vs_params.png", "psnr_vs_latency.png", "visual_x4.png"):
        assert Image.open(project / "reports" / "plots" / name).size[0] > 100
    assert_registered(project)

    second = run(["dvc", "repro"], project)
    assert "Data and pipelines are up to date" in second.stdout

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["latency_size"] = 24  # only the evaluation stages read it
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = run(["dvc", "status", "--json"], project).stdout
    changed = set(json.loads(status))
    assert changed == {"evaluate_bicubic", "evaluate@vdsr", "evaluate@asym_vdsr", "evaluate@asym_vdsr_compressed"}
    params["evaluate"]["latency_size"] = 32
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert_code_edits_rerun_what_imports_them(project)

    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], project)
    experiment = run(["dvc", "exp", "run", "-S", "evaluate.latency_size=16"], project)
    assert "Stage 'train@vdsr' didn't change, skipping" in experiment.stdout
    summary = json.loads((project / "metrics" / "vdsr.json").read_text())
    assert summary["efficiency"]["latency_input"] == [1, 1, 16, 16]


def assert_code_edits_rerun_what_imports_them(project: Path) -> None:
    """Editing the protocol (what the validation PSNR that selects models is) re-runs every stage that
    scores, training included; editing the data sources re-runs only the fetches."""
    protocol = project / "src" / "asymsr" / "sr" / "protocol.py"
    original = protocol.read_text()
    protocol.write_text(original + "\n# an edit\n")
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    protocol.write_text(original)

    def edited(stage: str) -> bool:  # the file itself, or the subpackage folder that holds it, is a changed dep
        changed = [dep for entry in status.get(stage, []) for dep in entry.get("changed deps", {})]
        return any(dep in ("src/asymsr/sr/protocol.py", "src/asymsr/sr") for dep in changed)

    scoring = ("prepare", "tune@vdsr", "tune@asym_vdsr", "train@vdsr", "train@asym_vdsr", "compress", "evaluate@vdsr")
    for stage in scoring:
        assert edited(stage), f"{stage} does not re-run when protocol.py changes: {status.get(stage)}"
    assert not any(stage.startswith("fetch@") for stage in status), status
    sources = project / "src" / "asymsr" / "data" / "sources.py"
    original = sources.read_text()
    sources.write_text(original + "\n# an edit\n")
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    sources.write_text(original)
    assert {stage.split("@")[0] for stage in status} == {"fetch"}, status


def assert_registered(project: Path) -> None:
    """The local MLflow store that `dvc repro` left: both architectures logged, registered, judged."""
    from mlflow import MlflowClient

    record = json.loads((project / "reports" / "registry.json").read_text())
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(record["parent_run_id"])
    assert parent.data.tags["profile"] == "tiny" and "git_commit" in parent.data.tags
    assert len(parent.data.tags["dvc_data_hash"]) == len("d41d8cd98f00b204e9800998ecf8427e.dir")
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(run.data.tags["asymsr.arch"] for run in children) == ["asym_vdsr", "asym_vdsr_compressed", "vdsr"]
    assert all("tiny_test_x4_psnr" in run.data.metrics for run in children)
    tuned_children = [child for child in children if child.data.tags["asymsr.arch"] != "asym_vdsr_compressed"]
    for child in tuned_children:  # pipeline -> architecture -> its study's run -> the trials
        tuned = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{child.info.run_id}'"
        )
        assert [run.data.tags["asymsr.role"] for run in tuned] == ["tuning"]
        assert child.data.tags["tuning_study"] == tuned[0].data.tags["optuna.study"]
        trials = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{tuned[0].info.run_id}'"
        )
        assert sorted(run.data.tags["optuna.trial"] for run in trials) == ["0", "1"]
        best = json.loads(
            (project / "reports" / "tune" / child.data.tags["asymsr.arch"] / "best_params.json").read_text()
        )
        assert float(child.data.params["lr"]) == best["lr"]
    version = client.get_model_version("asym_vdsr", record["versions"][record["candidate_run"]])
    assert version.tags["decision"] == record["decision"]["label"] in ("promoted", "rejected")
    assert version.tags["decision_reason"] == record["decision"]["reason"]
    assert client.get_model_version("vdsr", record["versions"]["vdsr"]).tags["profile"] == "tiny"
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/results.md", "report/visual_x4.png"} <= artifacts


def test_wrong_parameter_fails_before_any_work(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["batch_size"] = "sixteen"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "params.yaml: train.common.batch_size: Input should be a valid integer" in result.stderr + result.stdout
    assert not (project / "data").exists() and not (project / "models").exists()


def test_corrupt_image_fails_validation_and_nothing_downstream_runs(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    Path(params["datasets"]["tiny_train"], "zz_broken.png").write_bytes(b"not an image")
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "images tiny_train: FAILED" in output and "zz_broken.png" in output
    report = json.loads((project / "reports" / "validation" / "tiny_train.json").read_text())
    assert report["success"] is False
    assert "zz_broken.png" in (project / "reports" / "validation" / "tiny_train.html").read_text()
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


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every DVC-tracked file under ``folder`` (DVC's own .gitignore files are not outputs)."""
    files = (path for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".gitignore")
    return {str(path.relative_to(folder)): path.read_bytes() for path in files}


@pytest.mark.slow
def test_s3_remote_round_trip(project, s3_endpoint):
    import boto3

    boto3.client("s3").create_bucket(Bucket="asymsr-dvc")
    run(["dvc", "repro", "train@vdsr"], project)
    run(["dvc", "remote", "add", "-d", "storage", "s3://asymsr-dvc/cache"], project)
    run(["dvc", "remote", "modify", "--local", "storage", "endpointurl", s3_endpoint], project)
    before = {name: _tree_bytes(project / name) for name in ("data", "models")}
    run(["dvc", "push", "--with-deps", "train@vdsr"], project)
    for name in ("data", "models", ".dvc/cache"):
        shutil.rmtree(project / name)
    run(["dvc", "pull", "--with-deps", "train@vdsr"], project)
    after = {name: _tree_bytes(project / name) for name in ("data", "models")}
    assert after == before
    assert "models/vdsr/model.pt" in {f"models/{key}" for key in after["models"]}


@pytest.mark.slow
def test_paper_profile_data_path_on_the_shared_datasets(tmp_path):
    """fetch + validate + prepare of the paper profile on the real 291 images and four test sets,
    then the start of its training on the CPU, which must report an honest time projection."""
    from tests.conftest import shared_path

    datasets = shared_path("datasets")
    if shutil.which("dvc", path=str(BIN)) is None:
        pytest.skip("dvc is not installed in this environment (`make install-dev` installs it)")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    paper = (REPO / "profiles" / "paper.yaml").read_text().replace("../shared/datasets", str(datasets))
    (root / "params.yaml").write_text(paper)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)

    targets = ["validate_patches"] + [f"validate@{name}" for name in ("bsd_val10", "Set5", "Set14", "B100", "Urban100")]
    run(["dvc", "repro", *targets], root)
    manifest = json.loads((root / "data" / "patches" / "manifest.json").read_text())
    assert len(manifest["sources"]) == 280 and manifest["skipped"] == []
    assert manifest["settings"]["downsize_factors"] == [1.0, 0.7, 0.5]
    for name, count in (
        ("train291", 280),
        ("bsd_val10", 10),
        ("Set5", 5),
        ("Set14", 14),
        ("B100", 100),
        ("Urban100", 100),
    ):
        report = json.loads((root / "reports" / "validation" / f"{name}.json").read_text())
        assert report["success"] and report["rows"] == count, name
    assert json.loads((root / "reports" / "validation" / "patches.json").read_text())["success"]
    train_files = {path.name for path in (root / "data" / "raw" / "train291").iterdir()}
    val_files = {path.name for path in (root / "data" / "raw" / "bsd_val10").iterdir()} - {
        "MANIFEST.sha256",
        "SOURCE.json",
    }
    assert len(val_files) == 10 and not val_files & train_files

    environment = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    command = [
        "asymsr",
        "train",
        "--params",
        "params.yaml",
        "--arch",
        "vdsr",
        "--patches",
        "data/patches",
        "--val",
        "data/raw/bsd_val10",
        "--out",
        "models/vdsr",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(
        command, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(300, process.kill)  # the projection comes after 10 steps, well within this
    watchdog.start()
    projection = ""
    try:
        for line in process.stdout:
            if "projected at" in line:
                projection = line
                break
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
    assert "vdsr: 10 steps took" in projection and "the remaining 10000 steps are projected at" in projection
    hours = float(projection.split("projected at ")[1].split(" h")[0])
    assert hours > 1.0  # 10,000 steps of 64 patches do not fit in an hour on a CPU
