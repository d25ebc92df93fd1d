"""Shared fixtures. Tests that need ../shared (the read-only datasets and reference weights
beside the repository) skip with a message when it is absent, so a user's clone still passes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asymsr.data.prepare import PrepareConfig, prepare
from asymsr.eval.evaluation import evaluate
from asymsr.eval.inference import load_predictor
from asymsr.mlops import tracking
from asymsr.mlops.registry import ArchOutputs
from asymsr.training.loop import TrainConfig, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared datasets beside the repository), which is absent")
    return path


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 image: smooth gradients plus mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    layers = []
    for _ in range(channels):
        fx, fy, phase = rng.uniform(0.02, 0.15, 2).tolist() + [rng.uniform(0, 6)]
        layer = 128 + 80 * np.sin(fx * x + phase) * np.cos(fy * y) + rng.normal(0, 6, (height, width))
        layers.append(layer)
    image = np.clip(np.stack(layers, axis=-1), 0, 255).round().astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def tiny_image_sets(images: Path) -> Path:
    """Folders tiny_train (3 images), tiny_val (1) and tiny_test (2) of small PNGs under ``images``."""
    seed = 0
    for name, count in (("tiny_train", 3), ("tiny_val", 1), ("tiny_test", 2)):
        (images / name).mkdir(parents=True)
        for index in range(count):
            seed += 1
            Image.fromarray(smooth_image(72 + 8 * index, 88, seed=seed)).save(images / name / f"{index}.png")
    return images


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small PNGs (two RGB, one gray) in a folder named ``tiny``."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.fromarray(smooth_image(96, 120, seed=1)).save(folder / "a.png")
    Image.fromarray(smooth_image(88, 100, seed=2)).save(folder / "b.png")
    Image.fromarray(smooth_image(90, 90, channels=1, seed=3)).save(folder / "c.png")
    return folder


@pytest.fixture
def patch_folder(image_folder: Path, tmp_path: Path) -> Path:
    """Patches of 21x21 (scales 2, 3, 4, no down-sizing) cut from ``image_folder``."""
    out = tmp_path / "patches"
    prepare(
        [image_folder], out, PrepareConfig(patch_size=21, stride=21, downsize_factors=(1.0,)), workers=1, progress=False
    )
    return out


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch):
    """A real S3 endpoint (moto's server on 127.0.0.1) with test credentials in the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield endpoint
    server.stop()


TINY = {"depth": 5, "channels": 8}  # arch_overrides for fast, structurally faithful test models


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store and registry for this test."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    tracking.connect(uri)  # creates the store, and points this process's MLflow at it (not an earlier test's)
    return uri


@pytest.fixture
def pipeline_outputs(tmp_path: Path, patch_folder: Path, image_folder: Path) -> dict[str, ArchOutputs]:
    """Both architectures (tiny widths) trained for a few steps and evaluated on ``image_folder``."""
    outputs = {}
    for arch in ("vdsr", "asym_vdsr"):
        config = TrainConfig(
            arch=arch,
            arch_overrides=TINY,
            epochs=2,
            steps_per_epoch=2,
            batch_size=4,
            optimizer="adam",
            lr=1e-3,
            device="cpu",
            val_crop=48,
        )
        run_dir = tmp_path / "models" / arch
        train(config, patch_folder, run_dir, val=image_folder, progress=False)
        metrics = tmp_path / "metrics" / f"{arch}.json"
        predictor = load_predictor(run_dir / "model.pt", device="cpu")
        evaluate(predictor, [image_folder], [2], metrics, latency_size=256, progress=False)
        outputs[arch] = ArchOutputs(arch, run_dir, metrics)
    return outputs


def shift_psnr(output: ArchOutputs, delta_db: float) -> None:
    """Move every PSNR of an evaluation summary by ``delta_db`` (as if the model scored differently)."""
    summary = json.loads(output.metrics.read_text())
    for by_scale in summary["scores"].values():
        for scores in by_scale.values():
            scores["psnr"] += delta_db
    output.metrics.write_text(json.dumps(summary))


POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A new, empty database on the local PostgreSQL server, dropped on exit; yields its URL."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(dbname="postgres", connect_timeout=5, autocommit=True, **POSTGRES)
    except psycopg.OperationalError as error:
        pytest.skip(f"needs PostgreSQL on 127.0.0.1:5432 with user postgres (trust auth): {error}")
    name = f"asymsr_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty database on the local PostgreSQL server; dropped afterwards."""
    with new_postgres_database() as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(postgres_database: str, s3_endpoint: str, tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on PostgreSQL + S3, started as a user would; yields its URI."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="mlflow-artifacts")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    log = (tmp_path / "server.log").open("w")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_cli), "server",
            "--backend-store-uri", postgres_database,
            "--artifacts-destination", "s3://mlflow-artifacts/artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield uri
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
