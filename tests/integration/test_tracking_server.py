"""The cluster configuration for real: `mlflow server` with a PostgreSQL backend store (the
server on 127.0.0.1:5432, a fresh database per test) and artifacts on S3 (moto's server on
127.0.0.1); the register path runs through it and the results are read back by a client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asymsr.mlops import tracking
from asymsr.mlops.registry import CHAMPION, ArchOutputs, register_pipeline
from asymsr.schema.params import RegisterConfig

pytest.importorskip("mlflow")


@pytest.mark.slow
def test_register_through_postgres_and_s3_server(
    mlflow_server: str,
    s3_endpoint: str,
    pipeline_outputs: dict[str, ArchOutputs],
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    record = register_pipeline(
        list(pipeline_outputs.values()),
        RegisterConfig(experiment="cluster", max_psnr_drop=100.0),
        [image_folder],
        [2],
        tmp_path / "registry.json",
        tags={"profile": "server-test"},
    )
    assert record.decision.label == "promoted"

    # Read everything back through a plain client of the server.
    client = tracking.connect(mlflow_server)
    champion = client.get_model_version_by_alias("asym_vdsr", CHAMPION)
    assert str(champion.version) == record.versions["asym_vdsr"] == "1"
    assert champion.tags["decision"] == "promoted" and champion.tags["profile"] == "server-test"
    child = client.get_run(champion.tags["run_id"])
    assert child.data.metrics["tiny_x2_psnr"] > 0 and child.data.tags[tracking.ARCH_TAG] == "asym_vdsr"
    assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"checkpoint", "model_size.json"}

    # The artifacts really are in the S3 bucket, and the model loads back through the server.
    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="mlflow-artifacts")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert any(key.endswith("model_size.json") for key in keys)
    assert any(key.endswith("MLmodel") for key in keys)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    out = tmp_path / "up.png"
    from PIL import Image

    from tests.conftest import smooth_image

    Image.fromarray(smooth_image(30, 34, seed=4)).save(tmp_path / "in.png")
    done = subprocess.run(
        [sys.executable, "-m", "asymsr.cli", "upscale", str(tmp_path / "in.png"), str(out), "--scale", "3",
         "--model", "models:/asym_vdsr@champion", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (34 * 3, 30 * 3)
