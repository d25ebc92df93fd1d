import json

import numpy as np
import pytest
import torch

from asymsr.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.training import TrainConfig, TrainingDiverged, train


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        arch="asym_vdsr",
        epochs=3,
        steps_per_epoch=2,
        batch_size=4,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        lr_step_epochs=2,
        lr_gamma=0.5,
        device="cpu",
        val_scales=(2, 4),
        val_crop=48,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_training_writes_loadable_outputs(patch_folder, image_folder, tmp_path):
    out = tmp_path / "run"
    history = train(tiny_config(), patch_folder, out, val=image_folder, progress=False)
    assert [r.epoch for r in history] == [1, 2, 3] and history[-1].step == 6
    assert [r.lr for r in history] == [1e-3, 1e-3, 5e-4]
    assert all(np.isfinite(r.loss) and r.val_psnr is not None for r in history)
    assert set(history[0].val_psnr_per_scale) == {"x2", "x4"} and history[0].val_bicubic_psnr > 20
    records = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2, 3]
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # the documented contract
    assert state["epoch"] == 3 and state["arch"] == "asym_vdsr"
    model = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    assert model.block == "asymmetric"


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("clip_mode", ["norm", "adjustable"])
def test_resume_reproduces_an_uninterrupted_run_exactly(patch_folder, tmp_path, clip_mode):
    config = tiny_config(arch="vdsr", optimizer="sgd", lr=0.01, clip_mode=clip_mode, clip=0.01)
    train(config, patch_folder, tmp_path / "straight", progress=False)

    def interrupt_after_second_epoch(result):
        if result.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, patch_folder, tmp_path / "resumed", progress=False, on_epoch_end=interrupt_after_second_epoch)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    assert not (tmp_path / "resumed" / "model.pt").exists()
    history = train(config, patch_folder, tmp_path / "resumed", resume=True, progress=False)
    assert [r.epoch for r in history] == [1, 2, 3]
    straight, resumed = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_resume_refuses_a_different_config(patch_folder, tmp_path):
    train(tiny_config(epochs=1), patch_folder, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="different training config"):
        train(tiny_config(epochs=1, lr=0.5), patch_folder, tmp_path / "run", resume=True, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(patch_folder, tmp_path):
    def poison_patches(result):
        inputs = np.load(patch_folder / "inputs.npy", mmap_mode="r+")
        inputs[:] = np.nan
        inputs.flush()

    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 3.*checkpoint\.pt"):
        train(tiny_config(), patch_folder, tmp_path / "run", progress=False, on_epoch_end=poison_patches)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown training config keys: \\['learning_rate'\\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="lr=-1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="arch='srcnn'"):
        TrainConfig(arch="srcnn")


def test_channels_last_and_l1_sum_options_train(patch_folder, tmp_path):
    config = tiny_config(arch="vdsr", epochs=1, channels_last=True, loss="l1", loss_reduction="sum", amp=True)
    history = train(config, patch_folder, tmp_path / "run", progress=False)  # amp is ignored on the CPU
    assert np.isfinite(history[0].loss) and history[0].loss > 1.0  # summed over 4 x 21 x 21 pixels
