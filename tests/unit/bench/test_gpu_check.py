"""``benchmarks/gpu_check.sh`` where it can run without a GPU: its clear stop without CUDA, and its
merge step (``python -m asymsr.bench.gpu_check merge``) on a real small benchmark and real training runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

from asymsr.bench import gpu_check
from asymsr.cli import main
from tests.conftest import TINY

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.sh"
no_cuda_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop where CUDA is absent")


def run_script(out_dir: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "PYTHON": sys.executable}
    command = [shutil.which("bash") or "/bin/bash", str(SCRIPT), str(out_dir)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@no_cuda_only
def test_script_stops_with_the_reason_when_nvidia_smi_is_absent(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # PATH with the tools the script uses, without nvidia-smi
    bin_dir.mkdir()
    for tool in ("date", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    assert shutil.which("nvidia-smi", path=str(bin_dir)) is None
    done = run_script(tmp_path / "out", str(bin_dir))
    assert done.returncode == 1
    assert "gpu_check: no CUDA: nvidia-smi is not on PATH" in done.stderr
    assert not (tmp_path / "out").exists()


@no_cuda_only
def test_script_stops_with_the_reason_when_torch_sees_no_gpu(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a driver tool that answers, with a torch that has no CUDA device
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'Fake GPU, 999.0, 1 MiB'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    done = run_script(tmp_path / "out", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert done.returncode == 1
    assert "gpu_check: no CUDA: torch" in done.stderr and "Fake GPU" in done.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(gpu_check.NoCuda, match="no CUDA"):
        gpu_check.require_cuda()


def test_merge_of_a_real_benchmark_and_training_runs(
    patch_folder: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = ["bench", "--sizes", "16", "--threads", "1", "--repeats", "3", "--warmup", "0", "--quiet"]
    bench += ["--training", "--train-batch", "2", "--train-steps", "1", "--out", str(tmp_path / "bench")]
    assert main(bench) == 0
    train_args = []
    for arch, wall_ms in (("vdsr", 4321), ("asym_vdsr", 5000)):
        run = tmp_path / "runs" / arch
        train = ["train", "--arch", arch, "--patches", str(patch_folder), "--val", str(image_folder)]
        train += ["--out", str(run), "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "3"]
        train += ["--arch-overrides", json.dumps(TINY), "--device", "cpu", "--val-crop", "48", "--quiet"]
        assert main(train) == 0
        train_args += ["--train", "quick", arch, str(run), str(wall_ms)]
    out = tmp_path / "results" / "gpu_check.json"
    merge = ["merge", "--bench", str(tmp_path / "bench.json"), *train_args, "--training-data", "tiny"]
    capsys.readouterr()
    assert gpu_check.main([*merge, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    merged = json.loads(out.read_text())

    assert merged["bench"] == json.loads((tmp_path / "bench.json").read_text())
    host = merged["host"]
    assert host["torch"] == torch.__version__ and host["cuda"] == torch.version.cuda
    assert (host["gpu"] is None) == (not torch.cuda.is_available())
    assert datetime.fromisoformat(host["datetime_utc"]).tzinfo is not None
    assert merged["training_data"] == "tiny"
    assert [(row["profile"], row["arch"]) for row in merged["training"]] == [("quick", "vdsr"), ("quick", "asym_vdsr")]
    for row, wall_ms in zip(merged["training"], (4321, 5000), strict=True):
        history = json.loads((tmp_path / "runs" / row["arch"] / "history.json").read_text())["epochs"]
        train_s = sum(record["seconds"] for record in history)
        assert (row["epochs"], row["steps"], row["batch_size"], row["patches"]) == (2, 4, 3, 12)
        assert row["device"] == "cpu" and row["wall_s"] == wall_ms / 1000
        assert row["train_s"] == pytest.approx(train_s)
        assert row["patches_per_s"] == pytest.approx(12 / train_s)
        assert row["patches_per_s_wall"] == pytest.approx(12 / row["wall_s"])
        assert (row["final_loss"], row["final_val_psnr_db"]) == (history[-1]["loss"], history[-1]["val_psnr"])
    assert not list(out.parent.glob(".*.tmp"))


def test_merge_names_a_missing_or_wrong_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.json"
    missing = ["merge", "--bench", str(tmp_path / "absent.json"), "--training-data", "x", "--out", str(out)]
    assert gpu_check.main(missing) == 2
    assert "benchmark record not found" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"efficiency": {}}')
    bench = ["merge", "--bench", str(tmp_path / "other.json"), "--training-data", "x", "--out", str(out)]
    assert gpu_check.main(bench) == 2
    assert "not an `asymsr bench` record" in capsys.readouterr().err
    (tmp_path / "bench.json").write_text('{"cases": []}')
    run = ["merge", "--bench", str(tmp_path / "bench.json"), "--train", "quick", "vdsr", str(tmp_path), "12"]
    assert gpu_check.main([*run, "--training-data", "x", "--out", str(out)]) == 2
    assert f"quick/vdsr: no history.json in {tmp_path}" in capsys.readouterr().err
    wall = ["merge", "--bench", str(tmp_path / "bench.json"), "--train", "quick", "vdsr", str(tmp_path), "1.5s"]
    assert gpu_check.main([*wall, "--training-data", "x", "--out", str(out)]) == 2
    assert "WALL_MS must be an integer, got '1.5s'" in capsys.readouterr().err
    assert not out.exists()
