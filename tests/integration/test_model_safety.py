"""Registered models are data: asymsr reads only their weights-only checkpoint, a pickled payload is
refused by every command that loads from the registry, and ``mlflow models serve`` still serves the
model over real HTTP (a real SQLite store, the real ``asymsr`` and ``mlflow`` commands)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.mlops.registry import CHAMPION, EVAL_FINGERPRINT_TAG, ArchOutputs
from asymsr.nn.checkpoint import CheckpointError, model_payload, save_checkpoint
from asymsr.nn.models import build
from tests.conftest import TINY, smooth_image

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def in_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow puts a run's artifacts under ./mlruns: keep them in the test's folder."""
    monkeypatch.chdir(tmp_path)


class Payload(torch.nn.Module):
    """Unpickling it runs ``touch <marker>``: what a hostile registry entry would do."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


def register_pickled_champion(marker: Path, name: str = "asym_vdsr") -> None:
    import mlflow.pytorch

    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            Payload(marker), name="model", serialization_format="pickle", pip_requirements=["torch"]
        )
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version.version)
    for key, value in {"params": "10", "model_bytes": "10", EVAL_FINGERPRINT_TAG: "other data"}.items():
        client.set_model_version_tag(name, version.version, key, value)
    marker.unlink(missing_ok=True)  # logging may load the model itself to infer requirements


def asymsr(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "asymsr.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=180)


@pytest.mark.slow
def test_a_pickled_registry_entry_is_refused_by_upscale_evaluate_and_register(
    sqlite_store: str, pipeline_outputs: dict[str, ArchOutputs], image_folder: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    register_pickled_champion(marker)
    env = {**os.environ, "MLFLOW_TRACKING_URI": sqlite_store}
    uri = "models:/asym_vdsr@champion"
    upscaled = asymsr(
        "upscale", str(image_folder / "a.png"), str(tmp_path / "out.png"), "--scale", "2", "--model", uri,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    evaluated = asymsr(
        "evaluate", "--model", uri, "--data", str(image_folder), "--scales", "2", "--out", str(tmp_path / "eval.json"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    for done in (upscaled, evaluated):
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and "refusing to unpickle" in done.stderr, done.stderr
    from asymsr.mlops.registry import register_pipeline
    from asymsr.schema.params import RegisterConfig

    with pytest.raises(CheckpointError, match="refusing to unpickle"):  # register re-evaluates the champion
        register_pipeline(
            list(pipeline_outputs.values()), RegisterConfig(experiment="test"), [image_folder], [2],
            tmp_path / "registry.json", params={}, tags={},
        )  # fmt: skip
    assert not marker.exists() and not (tmp_path / "out.png").exists()
    # the payload is real: MLflow's own pickle loader runs it
    code = f"import mlflow.pytorch\ntry: mlflow.pytorch.load_model('{uri}')\nexcept Exception: pass"
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=180)
    assert marker.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_real_http_request(sqlite_store: str, tmp_path: Path) -> None:
    from asymsr.mlops import tracking

    model = build("asym_vdsr", **TINY).eval()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", model_payload("asym_vdsr", model))
    with mlflow.start_run():
        uri = tracking.log_model(tmp_path / "model.pt", "asym_vdsr", {}).model_uri
    version = mlflow.register_model(uri, "asym_vdsr")
    mlflow.MlflowClient().set_registered_model_alias("asym_vdsr", CHAMPION, version.version)

    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # mlflow starts uvicorn by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": sqlite_store, "PATH": path}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/asym_vdsr@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        luminance = np.asarray(Image.fromarray(smooth_image(23, 31, channels=1, seed=4)), dtype=np.float32) / 255
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": luminance[None, None].tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
    finally:
        server.terminate()
        server.wait(timeout=30)
    with torch.inference_mode():
        expected = model(torch.from_numpy(luminance)[None, None]).numpy()
    assert answer.shape == expected.shape == (1, 1, 23, 31)
    assert np.abs(answer - expected).max() < 1e-6


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail("mlflow models serve exited:\n" + server.stdout.read().decode()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow models serve did not answer {url} within {seconds} s")


def test_a_tampered_model_description_is_refused_without_reading_elsewhere(sqlite_store: str, tmp_path: Path) -> None:
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from asymsr.mlops import tracking

    save_checkpoint(tmp_path / "model.pt", model_payload("asym_vdsr", build("asym_vdsr", **TINY)))
    with mlflow.start_run():
        uri = tracking.log_model(tmp_path / "model.pt", "asym_vdsr", {}).model_uri
    assert tracking.load_logged_model(uri).block == "asymmetric"
    folder = Path(ModelsArtifactRepository.get_underlying_uri(uri).removeprefix("file://"))
    description = (folder / "MLmodel").read_text()
    outside = tmp_path / "elsewhere.pt"  # a valid checkpoint outside the model's folder
    save_checkpoint(outside, model_payload("vdsr", build("vdsr", **TINY)))
    escape = "/".join([".."] * len(folder.relative_to(tmp_path).parts)) + "/elsewhere.pt"
    for tampered in (
        description.replace("path: artifacts/model.pt", "path: artifacts/" + escape.replace(".", "%2e")),
        description.replace("path: artifacts/model.pt", "path: " + escape),
        description.replace("path: artifacts/model.pt", "path: [1, 2]"),
        "flavors: [unclosed",
        "- a list, not a mapping",
    ):
        (folder / "MLmodel").write_text(tampered)
        with pytest.raises(CheckpointError, match="not an asymsr model .* refusing to unpickle it"):
            tracking.load_logged_model(uri)
