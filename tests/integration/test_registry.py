"""`asymsr register` against a real MLflow store (SQLite in a temporary folder): logging,
registration, every branch of the promotion gate, idempotency, failure atomicity, and loading
the champion by its registry URI in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from asymsr.eval.evaluation import evaluate, evaluate_folders, mean_scores
from asymsr.eval.inference import load_predictor
from asymsr.mlops import tracking
from asymsr.mlops.registry import CHALLENGER, CHAMPION, ArchOutputs, register_pipeline
from asymsr.schema.params import RegisterConfig
from asymsr.training.loop import TrainConfig, train
from tests.conftest import TINY, shift_psnr, smooth_image

mlflow = pytest.importorskip("mlflow")


def run_register(outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path, **settings) -> dict:
    record = register_pipeline(
        list(outputs.values()),
        RegisterConfig(experiment="test", **settings),
        [image_folder],
        [2],
        tmp_path / "registry.json",
        params={"train": {"common": {"lr": 0.001}}},
        tags={"profile": "test"},
    )
    return record.model_dump(mode="json")


def versions(client, name: str) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{name}'"))


# ---------------------------------------------------------------- against a real store


@pytest.mark.slow
def test_register_promotes_then_gates_and_is_idempotent(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path
) -> None:
    # Make the candidate 0.1 dB below the reference: inside the 0.2 dB allowance.
    reference_psnr = json.loads(pipeline_outputs["vdsr"].metrics.read_text())
    candidate_psnr = json.loads(pipeline_outputs["asym_vdsr"].metrics.read_text())
    gap = reference_psnr["scores"]["tiny"]["x2"]["psnr"] - candidate_psnr["scores"]["tiny"]["x2"]["psnr"]
    shift_psnr(pipeline_outputs["asym_vdsr"], gap - 0.1)
    del reference_psnr["efficiency"]["deploy"]  # the reference as evaluated before deploy choices were recorded
    pipeline_outputs["vdsr"].metrics.write_text(json.dumps(reference_psnr))

    # 1. No champion yet: promoted, both registered, everything logged.
    first = run_register(pipeline_outputs, image_folder, tmp_path)
    client = tracking.connect()
    assert first["decision"]["label"] == "promoted" and "no champion yet" in first["decision"]["reason"]
    assert first["versions"] == {"vdsr": "1", "asym_vdsr": "1"}
    champion = client.get_model_version_by_alias("asym_vdsr", CHAMPION)
    assert str(champion.version) == "1" and champion.tags["decision"] == "promoted"
    assert champion.current_stage == "Production"  # stages are on by default, beside the alias
    assert {"decision_reason", "decision_time", "decision_figures", "psnr_drop_db"} <= set(champion.tags)
    assert abs(float(champion.tags["psnr_drop_db"]) - 0.1) < 1e-6
    parent = client.get_run(first["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["asymsr.decision"] == "promoted"
    assert parent.data.params["train.common.lr"] == "0.001"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_arch = {run.data.tags[tracking.ARCH_TAG]: run for run in children}
    assert set(by_arch) == {"vdsr", "asym_vdsr"}
    child = by_arch["asym_vdsr"]
    assert child.info.status == "FINISHED" and child.data.tags["profile"] == "test"
    assert child.data.params["lr"] == "0.001" and child.data.params["arch_overrides.depth"] == "5"
    history = client.get_metric_history(child.info.run_id, "val_psnr")
    assert [m.step for m in history] == [1, 2]
    for key in ("tiny_x2_psnr", "tiny_x2_ssim", "mean_psnr", "params", "model_bytes", "macs_per_pixel"):
        assert key in child.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"model_size.json", "checkpoint", "evaluation", "history.json"} <= artifacts
    size = json.loads(Path(client.download_artifacts(child.info.run_id, "model_size.json", str(tmp_path))).read_text())
    assert set(size["params_by_layer_type"]) == {"conv3x3", "conv3x1", "conv1x3"}
    assert size["deploy_bytes"]["fused_3x3"] > size["deploy_bytes"]["as_trained"]
    # The measured deploy form: tags and per-candidate latencies on the run, metadata of the model.
    deploy = candidate_psnr["efficiency"]["deploy"]
    expected = {"deploy_form": deploy["form"], "deploy_memory_format": deploy["memory_format"]}
    expected["deploy_device"] = deploy["device"]
    assert champion.run_id == child.info.run_id
    assert {key: child.data.tags[key] for key in expected} == expected
    logged = {key: value for key, value in child.data.metrics.items() if key.startswith("deploy_latency_ms_")}
    assert logged == {f"deploy_latency_ms_{name.replace('/', '_')}": ms for name, ms in deploy["timings_ms"].items()}
    # MLflow 3: the version's model is a LoggedModel of the child run, with the evaluation linked to it
    assert champion.source.startswith("models:/m-")  # the version's source is the LoggedModel, not a run path
    logged = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert logged.name == "model" and logged.source_run_id == child.info.run_id
    linked = {metric.key: metric.value for metric in logged.metrics}
    for key in ("tiny_x2_psnr", "tiny_x2_ssim", "mean_psnr", "params", "model_bytes", "macs_per_pixel"):
        assert linked[key] == child.data.metrics[key], key
    metadata = mlflow.models.get_model_info("models:/asym_vdsr@champion").metadata
    assert {key: metadata[key] for key in expected} == expected
    assert not set(expected) & set(by_arch["vdsr"].data.tags)
    assert not set(expected) & set(mlflow.models.get_model_info("models:/vdsr/1").metadata)

    # 2. Same inputs again: nothing new, nothing changed.
    runs_before = len(client.search_runs([parent.info.experiment_id]))
    again = run_register(pipeline_outputs, image_folder, tmp_path)
    assert again["unchanged"] and again["versions"] == first["versions"]
    assert versions(client, "asym_vdsr") == ["1"] and versions(client, "vdsr") == ["1"]
    assert len(client.search_runs([parent.info.experiment_id])) == runs_before

    # 3. A new run whose candidate is within the allowance but below the champion: challenger.
    shift_psnr(pipeline_outputs["asym_vdsr"], -0.05)
    third = run_register(pipeline_outputs, image_folder, tmp_path)
    assert third["decision"]["label"] == "rejected" and third["decision"]["reason"].startswith("progress")
    assert str(client.get_model_version_by_alias("asym_vdsr", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("asym_vdsr", CHALLENGER).version) == "2"
    assert client.get_model_version("asym_vdsr", "2").tags["compared_champion_version"] == "1"

    # 4. A candidate too far below its reference: rejected for quality.
    shift_psnr(pipeline_outputs["asym_vdsr"], -0.5)
    fourth = run_register(pipeline_outputs, image_folder, tmp_path)
    assert fourth["decision"]["label"] == "rejected" and fourth["decision"]["reason"].startswith("quality")
    assert str(client.get_model_version_by_alias("asym_vdsr", CHALLENGER).version) == "3"

    # 5. A better candidate: champion moves, stages follow, the old one is archived.
    shift_psnr(pipeline_outputs["asym_vdsr"], 0.5 + 0.05 + 0.05)
    fifth = run_register(pipeline_outputs, image_folder, tmp_path)
    assert fifth["decision"]["label"] == "promoted" and "beats champion version 1" in fifth["decision"]["reason"]
    assert str(client.get_model_version_by_alias("asym_vdsr", CHAMPION).version) == "4"
    assert client.get_model_version("asym_vdsr", "4").current_stage == "Production"
    assert client.get_model_version("asym_vdsr", "1").current_stage == "Archived"
    assert versions(client, "vdsr") == ["1", "2", "3", "4"]
    assert json.loads((tmp_path / "registry.json").read_text())["versions"]["asym_vdsr"] == "4"


@pytest.mark.slow
@pytest.mark.parametrize("removed", [False, True], ids=["store-refuses-stages", "mlflow-without-stages"])
def test_without_registry_stages_the_alias_is_set_with_a_one_line_notice(
    sqlite_store: str,
    pipeline_outputs: dict[str, ArchOutputs],
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    removed: bool,
) -> None:
    """A future MLflow without stages (the method gone) or a store that refuses them: not a failure."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    calls = []
    if removed:
        monkeypatch.delattr(MlflowClient, "transition_model_version_stage")
    else:

        def refuse(self, *args, **kwargs):
            calls.append(args)
            raise MlflowException("Model registry stages have been removed.\nUse aliases.")

        monkeypatch.setattr(MlflowClient, "transition_model_version_stage", refuse)
    record = run_register(pipeline_outputs, image_folder, tmp_path, max_psnr_drop=100.0)
    assert record["decision"]["label"] == "promoted"
    assert removed or calls, "the stage call was not even tried"
    client = tracking.connect()
    champion = client.get_model_version_by_alias("asym_vdsr", CHAMPION)
    assert str(champion.version) == "1" and champion.current_stage == "None"
    notices = [line for line in capsys.readouterr().err.splitlines() if "notice" in line]
    assert len(notices) == 1, notices
    assert (
        "registry stages unavailable" in notices[0]
        and "asym_vdsr version 1 is the champion by alias only" in notices[0]
    )
    assert removed or "Model registry stages have been removed." in notices[0]


@pytest.mark.slow
def test_champion_is_re_evaluated_on_new_evaluation_data(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path
) -> None:
    run_register(pipeline_outputs, image_folder, tmp_path, max_psnr_drop=100.0)
    Image.fromarray(smooth_image(80, 84, seed=9)).save(image_folder / "d.png")  # the evaluation data change
    shift_psnr(pipeline_outputs["vdsr"], 0.01)  # a new pipeline run (new inputs)
    record = run_register(pipeline_outputs, image_folder, tmp_path, max_psnr_drop=100.0)
    compared = record["decision"]["figures"]["champion"]
    predictor = load_predictor(pipeline_outputs["asym_vdsr"].run_dir / "model.pt", device="cpu")
    expected = mean_scores(evaluate_folders(predictor, [image_folder], [2], progress=False))
    assert compared["version"] == "1"
    assert compared["mean_psnr"] == pytest.approx(expected["tiny"]["x2"].psnr, abs=1e-6)


@pytest.mark.slow
def test_failed_model_logging_registers_nothing(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    real_log_model = tracking.log_model
    calls = []

    def failing_second_time(*args, **kwargs):  # fault injection: the second upload breaks
        calls.append(1)
        if len(calls) == 2:
            raise OSError("artifact store went away")
        return real_log_model(*args, **kwargs)

    monkeypatch.setattr(tracking, "log_model", failing_second_time)
    with pytest.raises(OSError, match="went away"):
        run_register(pipeline_outputs, image_folder, tmp_path)
    client = tracking.connect()
    assert client.search_registered_models() == [] or all(
        not client.search_model_versions(f"name='{m.name}'") for m in client.search_registered_models()
    )
    parents = client.search_runs(
        [client.get_experiment_by_name("test").experiment_id], filter_string="tags.`asymsr.role` = 'pipeline'"
    )
    assert [run.info.status for run in parents] == ["FAILED"]
    assert not (tmp_path / "registry.json").exists()


@pytest.mark.slow
def test_live_training_log_then_register_keeps_one_curve(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], patch_folder: Path, image_folder: Path, tmp_path: Path
) -> None:
    client = tracking.connect()
    parent = tracking.start_parent_run(client, "test", "kubeflow-style", {})
    config = TrainConfig(
        arch="vdsr", arch_overrides=TINY, epochs=3, steps_per_epoch=1, batch_size=4, device="cpu", val_crop=48
    )
    with tracking.live_training_log(parent, "vdsr", config.to_dict()) as on_epoch_end:
        train(
            config,
            patch_folder,
            pipeline_outputs["vdsr"].run_dir,
            val=image_folder,
            on_epoch_end=on_epoch_end,
            progress=False,
        )
    evaluate(
        load_predictor(pipeline_outputs["vdsr"].run_dir / "model.pt", device="cpu"),
        [image_folder],
        [2],
        pipeline_outputs["vdsr"].metrics,
        latency_size=256,
        progress=False,
    )
    record = register_pipeline(
        list(pipeline_outputs.values()),
        RegisterConfig(experiment="test"),
        [image_folder],
        [2],
        tmp_path / "registry.json",
        parent_run_id=parent,
    )
    assert record.parent_run_id == parent
    child = tracking.child_run(client, parent, "vdsr")
    assert [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")] == [1, 2, 3]
    assert client.get_run(parent).info.status == "RUNNING"  # the caller that created it ends it


@pytest.mark.slow
def test_champion_loads_by_registry_uri_in_a_fresh_process(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path
) -> None:
    run_register(pipeline_outputs, image_folder, tmp_path, max_psnr_drop=100.0)
    image = tmp_path / "new.png"
    Image.fromarray(smooth_image(40, 52, seed=11)).save(image)
    env = {**os.environ, "MLFLOW_TRACKING_URI": sqlite_store}
    by_uri, by_file = tmp_path / "by_uri.png", tmp_path / "by_file.png"
    for model, out in (
        ("models:/asym_vdsr@champion", by_uri),
        (pipeline_outputs["asym_vdsr"].run_dir / "model.pt", by_file),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "asymsr.cli",
                "upscale",
                str(image),
                str(out),
                "--scale",
                "2",
                "--model",
                str(model),
                "--device",
                "cpu",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert np.array_equal(np.asarray(Image.open(by_uri)), np.asarray(Image.open(by_file)))
    code = (  # the serving path: a pyfunc built from the weights-only checkpoint, nothing unpickled
        "import mlflow.pyfunc, numpy as np; m = mlflow.pyfunc.load_model('models:/asym_vdsr@champion');"
        "print(type(m.unwrap_python_model()).__name__, m.predict(np.zeros((1, 1, 13, 17), np.float32)).shape)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[-5:] == ["SuperResolver", "(1,", "1,", "13,", "17)"]


def test_unreachable_server_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "http://127.0.0.1:9"  # discard port: nothing listens
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "x.png")  # inputs are checked before the model loads
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "asymsr.cli",
            "upscale",
            "x.png",
            "y.png",
            "--scale",
            "2",
            "--model",
            "models:/asym_vdsr@champion",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and uri in done.stderr and "3 attempts" in done.stderr
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_the_better_of_two_candidates_goes_to_the_gate_and_both_carry_their_origin(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], patch_folder: Path, image_folder: Path, tmp_path: Path
) -> None:
    """A compressed Asym_VDSR and one trained from scratch: both registered, the better one judged."""
    from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
    from asymsr.schema.params import CompressConfig
    from asymsr.training.compression import Job, compress

    teacher = model_from_checkpoint(load_checkpoint(pipeline_outputs["vdsr"].run_dir / "model.pt"))
    finetune = {"device": "cpu", "batch_size": 4, "steps_per_epoch": 2, "val_crop": 48}
    config = CompressConfig(rank=4, refit_patches=8, steps=2, finetune=finetune)
    run_dir = tmp_path / "models" / "asym_vdsr_compressed"
    compress(Job(teacher, "models/vdsr/model.pt", "ab" * 32, config, patch_folder, run_dir, progress=False))
    metrics = tmp_path / "metrics" / "asym_vdsr_compressed.json"
    evaluate(load_predictor(run_dir / "model.pt", device="cpu"), [image_folder], [2], metrics, 256, progress=False)
    compressed = ArchOutputs("asym_vdsr", run_dir, metrics, label="asym_vdsr_compressed")
    scratch = pipeline_outputs["asym_vdsr"]
    # place the compressed model 0.05 dB below the reference and the scratch one 0.5 dB below it
    reference_db = json.loads(pipeline_outputs["vdsr"].metrics.read_text())["scores"]["tiny"]["x2"]["psnr"]
    for output, below in ((compressed, 0.05), (scratch, 0.5)):
        own = json.loads(output.metrics.read_text())["scores"]["tiny"]["x2"]["psnr"]
        shift_psnr(output, reference_db - below - own)
    outputs = {**pipeline_outputs, "asym_vdsr_compressed": compressed}
    runs = ["asym_vdsr", "asym_vdsr_compressed"]

    first = run_register(outputs, image_folder, tmp_path, candidate_runs=runs)
    assert first["candidate_run"] == "asym_vdsr_compressed" and first["decision"]["label"] == "promoted"
    assert first["versions"] == {"vdsr": "1", "asym_vdsr": "1", "asym_vdsr_compressed": "2"}
    client = tracking.connect()
    champion = client.get_model_version_by_alias("asym_vdsr", CHAMPION)
    assert str(champion.version) == "2"
    tags = champion.tags
    assert (tags["origin"], tags["teacher"], tags["teacher_sha256"], tags["rank"]) == (
        "compressed", "models/vdsr/model.pt", "ab" * 32, "4"
    )  # fmt: skip
    assert tags["finetune_steps"] == "2" and tags["asymsr.run"] == "asym_vdsr_compressed"
    runner_up = client.get_model_version("asym_vdsr", "1")
    assert runner_up.tags["origin"] == "trained" and runner_up.tags["decision"] == "rejected"
    assert runner_up.tags["decision_reason"] == (
        "not this run's best candidate: 0.450 dB below asym_vdsr_compressed on the same evaluation data"
    )
    # a second call with the same inputs changes nothing and names the same judged run
    second = run_register(outputs, image_folder, tmp_path, candidate_runs=runs)
    assert second["unchanged"] and second["candidate_run"] == "asym_vdsr_compressed"
    assert versions(client, "asym_vdsr") == ["1", "2"]


def test_concurrent_workers_share_one_architecture_run(sqlite_store: str) -> None:
    """Tune workers of one architecture start together: each asks for the architecture's run.

    Eight rounds, because one round let the earlier keep-the-oldest scheme through about three
    times in four (it split into 2 or 3 runs in 9 of 40 rounds on a 2-core VM).
    """
    from concurrent.futures import ThreadPoolExecutor

    client = tracking.connect()
    for _ in range(8):
        parent = tracking.start_parent_run(client, "race", "pipeline", {})
        barrier = threading.Barrier(6)

        def ask(_: int, parent: str = parent, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()  # all at once, as the pods of one ParallelFor
            return tracking.child_run(tracking.connect(), parent, "vdsr").info.run_id

        with ThreadPoolExecutor(6) as pool:
            answers = set(pool.map(ask, range(6)))
        experiment = client.get_run(parent).info.experiment_id
        alive = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
        assert len(answers) == 1 and [run.info.run_id for run in alive] == list(answers)
        assert client.get_run(parent).data.params[f"{tracking.CHILD_RUN_PARAM}.vdsr"] in answers


def test_workers_that_all_create_a_run_before_any_claims_end_in_one(
    sqlite_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving, forced: every worker has made its own run before any claims one."""
    from concurrent.futures import ThreadPoolExecutor

    client = tracking.connect()
    parent = tracking.start_parent_run(client, "race", "pipeline", {})
    searched, made = threading.Barrier(4, timeout=60), threading.Barrier(4, timeout=60)
    search, create = tracking._children, tracking._create_child

    def search_then_wait(*args: Any) -> Any:
        found = search(*args)
        searched.wait()  # nobody creates until all four have found nothing
        return found

    def create_then_wait(*args: Any) -> Any:
        run = create(*args)
        made.wait()  # nobody claims until all four runs exist
        return run

    monkeypatch.setattr(tracking, "_children", search_then_wait)
    monkeypatch.setattr(tracking, "_create_child", create_then_wait)

    def ask(_: int) -> str:
        return tracking.child_run(tracking.connect(), parent, "loss.label=0.1").info.run_id

    with ThreadPoolExecutor(4) as pool:
        answers = set(pool.map(ask, range(4)))
    experiment = client.get_run(parent).info.experiment_id
    every = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'", run_view_type=3)
    alive = [run.info.run_id for run in every if run.info.lifecycle_stage == "active"]
    assert len(every) == 4 and len(answers) == 1 and alive == list(answers)  # four made, three deleted
    key = tracking.child_run_key("loss.label=0.1")
    assert key.startswith("asymsr.child_run_sha1.") and client.get_run(parent).data.params[key] in answers


def test_a_child_made_before_claims_existed_is_adopted(sqlite_store: str) -> None:
    client = tracking.connect()
    parent = tracking.start_parent_run(client, "adopt", "pipeline", {})
    experiment = client.get_run(parent).info.experiment_id
    older = tracking._create_child(client, experiment, parent, "vdsr", None)  # as the earlier scheme left it: no claim
    assert tracking.child_run(client, parent, "vdsr").info.run_id == older.info.run_id
    assert client.get_run(parent).data.params["asymsr.child_run.vdsr"] == older.info.run_id
    client.delete_run(older.info.run_id)
    with pytest.raises(ValueError, match=f"run {older.info.run_id}, claimed for vdsr .* is deleted"):
        tracking.child_run(client, parent, "vdsr")


def test_start_run_creates_the_architecture_runs_before_any_step_fans_out(sqlite_store: str, tmp_path: Path) -> None:
    from asymsr.stages import start_run

    root = Path(__file__).resolve().parents[2]
    result = start_run.run(start_run.Args(params=root / "params.yaml", out=tmp_path / "run.json"))
    client = tracking.connect()
    experiment = client.get_run(result.parent_run_id).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    by_arch = {run.data.tags[tracking.ARCH_TAG]: run.info.run_id for run in children}
    assert sorted(by_arch) == ["asym_vdsr", "vdsr"] and len(children) == 2
    assert tracking.child_run(client, result.parent_run_id, "vdsr").info.run_id == by_arch["vdsr"]  # found, not made
