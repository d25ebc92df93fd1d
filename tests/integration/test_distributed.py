"""DistributedDataParallel training: 2 processes under torchrun (gloo, CPU) against one process.

Same global batch, so the same loss curve and final weights up to floating-point rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asymsr.cli import main
from asymsr.data.patches import epoch_plan
from asymsr.mlops.tracking import PARENT_RUN_ENV
from asymsr.nn.checkpoint import load_checkpoint
from asymsr.training.distributed import Placement
from asymsr.training.loop import TrainConfig, train
from tests.conftest import TINY

PROCESSES = 2
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        arch="vdsr",
        arch_overrides=TINY,
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
        optimizer="sgd",
        lr=0.01,
        lr_step_epochs=1,
        lr_gamma=0.5,
        clip_mode="none",
        device="cpu",
        val_scales=(2,),
        val_crop=48,
    )
    values.update(overrides)
    return TrainConfig(**values)


def torchrun_train(config: TrainConfig, patches: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """``asymsr train`` in 2 processes with torchrun (1 thread each); fails the test on a non-zero exit."""
    config_file = out.with_name(out.name + "-config.json")
    config_file.write_text(json.dumps(config.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(PARENT_RUN_ENV, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={PROCESSES}"]
    command += ["-m", "asymsr.cli", "train", "--patches", str(patches), "--out", str(out)]
    command += ["--config", str(config_file), "--quiet", *flags]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, f"torchrun failed:\n{finished.stdout}\n{finished.stderr}"
    return finished


def assert_same_run(single: Path, parallel: Path) -> None:
    """Equal epochs, steps and lrs; losses, validation PSNRs and final weights equal up to rounding."""
    expected = json.loads((single / "history.json").read_text())["epochs"]
    actual = json.loads((parallel / "history.json").read_text())["epochs"]
    assert [(r["epoch"], r["step"], r["lr"]) for r in actual] == [(r["epoch"], r["step"], r["lr"]) for r in expected]
    for got, want in zip(actual, expected, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=LOSS_RTOL)
        if want["val_psnr"] is not None:
            assert got["val_psnr"] == pytest.approx(want["val_psnr"], abs=1e-4)
    for name in ("model.pt", "checkpoint.pt"):
        want, got = load_checkpoint(single / name)["model"], load_checkpoint(parallel / name)["model"]
        assert list(got) == list(want)  # in particular no DDP "module." prefix
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=WEIGHT_ATOL, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        # summed loss: each rank's loss is scaled by the world size so the gradient is the global sum
        dict(optimizer="sgd", loss_reduction="sum", lr=1e-5),
        # mean loss, clipping that bites (so it must see the all-reduced gradient), validation on rank 0
        dict(arch="asym_vdsr", optimizer="adam", lr=1e-3, clip_mode="norm", clip=0.01),
    ],
    ids=["sgd-sum", "adam-mean-clipped"],
)
def test_two_processes_follow_the_single_process_loss_curve(patch_folder, image_folder, tmp_path, overrides):
    config = tiny_config(**overrides)
    train(config, patch_folder, tmp_path / "single", val=image_folder, progress=False)
    finished = torchrun_train(config, patch_folder, tmp_path / "ddp", "--val", str(image_folder))
    assert_same_run(tmp_path / "single", tmp_path / "ddp")
    assert finished.stdout.count("trained ") == 1  # only rank 0 reports


@pytest.mark.slow
def test_torchrun_resumes_a_single_process_checkpoint(patch_folder, tmp_path):
    config = tiny_config()
    train(config, patch_folder, tmp_path / "single", progress=False)

    def interrupt_after_first_epoch(result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, patch_folder, tmp_path / "ddp", progress=False, on_epoch_end=interrupt_after_first_epoch)
    torchrun_train(config, patch_folder, tmp_path / "ddp", "--resume")
    assert_same_run(tmp_path / "single", tmp_path / "ddp")


def test_the_ranks_slices_make_up_each_global_batch():
    indices, transforms = epoch_plan(40, 8, seed=3, epoch=1, steps=4)
    for plan in (indices, transforms):
        slices = [Placement(rank, 4, rank, torch.device("cpu")).shard(plan) for rank in range(4)]
        assert all(part.shape == (4, 2) for part in slices)
        assert torch.equal(torch.cat(slices, dim=1), plan)


def test_a_batch_size_indivisible_by_the_world_size_is_refused(patch_folder, tmp_path, monkeypatch, capsys):
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)  # as torchrun would; the check comes before joining any process group
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    with pytest.raises(ValueError, match="batch_size 3 is not divisible by the world size 2"):
        train(tiny_config(batch_size=3), patch_folder, tmp_path / "run", progress=False)
    argv = ["train", "--patches", str(patch_folder), "--out", str(tmp_path / "run"), "--batch-size", "3"]
    assert main([*argv, "--device", "cpu", "--quiet"]) == 2
    assert "batch_size 3 is not divisible by the world size 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
