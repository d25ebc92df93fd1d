import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.data.patches import PatchBatches, epoch_plan
from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.nn.models import build
from asymsr.sr import protocol
from asymsr.training import loop
from asymsr.training.loop import TrainConfig, TrainingDiverged, load_validation_pairs, train, validation_psnr
from tests.conftest import TINY


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


def replay(config: TrainConfig, patches) -> tuple[dict[str, torch.Tensor], list[tuple[float, float]]]:
    """The documented training algorithm as a plain PyTorch loop, in NCHW and without autocast.

    Same seeded initial weights and the same batches (``epoch_plan``, ``PatchBatches``), then per
    step: loss, zero_grad, backward, clipping (global norm <= clip, or each element within
    +-clip / lr at the epoch's lr), optimiser step; StepLR after each epoch. Returns the final
    weights and (lr, mean loss) per epoch.
    """
    torch.manual_seed(config.seed)
    model = build(config.arch, **config.arch_overrides)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    criterion = {"mse": torch.nn.MSELoss, "l1": torch.nn.L1Loss}[config.loss](reduction=config.loss_reduction)
    count = len(np.load(patches / "scales.npy"))
    epochs = []
    for epoch in range(config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        indices, transforms = epoch_plan(count, config.batch_size, config.seed, epoch, config.steps_per_epoch)
        losses = []
        for inputs, labels, _scales in PatchBatches(patches, indices, transforms):
            loss = criterion(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            if config.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            elif config.clip_mode == "adjustable":
                torch.nn.utils.clip_grad_value_(model.parameters(), config.clip / lr)
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        epochs.append((lr, sum(losses) / len(losses)))
    return model.state_dict(), epochs


def assert_same_training(history, out, expected, atol: float = 0.0) -> None:
    """``train``'s history and final weights equal the replay's (exactly, or within ``atol``)."""
    weights, epochs = expected
    assert [r.lr for r in history] == [lr for lr, _ in epochs]
    for record, (_, loss) in zip(history, epochs, strict=True):
        assert record.loss == pytest.approx(loss, rel=1e-6 if atol else 1e-12)
    saved = load_checkpoint(out / "model.pt")["model"]
    assert saved.keys() == weights.keys()
    for key, value in weights.items():
        assert torch.allclose(saved[key], value, rtol=0, atol=atol), key


def test_training_writes_loadable_outputs(patch_folder, image_folder, tmp_path):
    """History, checkpoints and final weights of a short run, the weights equal to the plain-loop replay."""
    out = tmp_path / "run"
    config = tiny_config(arch_overrides=TINY)
    history = train(config, patch_folder, out, val=image_folder, progress=False)
    assert [r.epoch for r in history] == [1, 2, 3] and [r.step for r in history] == [2, 4, 6]
    assert [r.lr for r in history] == [1e-3, 1e-3, 5e-4]
    assert_same_training(history, out, replay(config, patch_folder))
    pairs = load_validation_pairs(image_folder, [2, 4], 48)
    bicubic = validation_psnr(None, pairs, torch.device("cpu"))
    assert all(r.val_bicubic_psnr == bicubic["mean"] for r in history) and bicubic["mean"] > 20
    final = validation_psnr(model_from_checkpoint(load_checkpoint(out / "model.pt")), pairs, torch.device("cpu"))
    assert history[-1].val_psnr == final.pop("mean") and history[-1].val_psnr_per_scale == final
    records = json.loads((out / "history.json").read_text())
    assert records["arch"] == "asym_vdsr" and [r["epoch"] for r in records["epochs"]] == [1, 2, 3]
    assert [r["loss"] for r in records["epochs"]] == [r.loss for r in history]
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # the documented contract
    assert state["epoch"] == 3 and state["step"] == 6 and state["arch"] == "asym_vdsr"
    assert all(torch.equal(state["model"][key], value) for key, value in _weights(out / "model.pt").items())
    model = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    assert model.block == "asymmetric" and model.config()["channels"] == TINY["channels"]


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.5, "weight_decay": 1e-3, "clip_mode": "norm", "clip": 0.05},
        {"optimizer": "sgd", "lr": 0.02, "clip_mode": "adjustable", "clip": 1e-4, "lr_step_epochs": 1},
        {
            "optimizer": "adam",
            "lr": 3e-3,
            "weight_decay": 0.05,
            "clip_mode": "none",
            "loss": "l1",
            "seed": 3,
            "steps_per_epoch": 1,
        },
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. a validation mean over no images
def test_each_step_is_the_documented_update(patch_folder, tmp_path, options):
    """Optimiser, momentum, weight decay, clipping mode, loss and schedule as a plain PyTorch loop applies them."""
    config = tiny_config(arch="vdsr", arch_overrides=TINY, **options)
    history = train(config, patch_folder, tmp_path / "run", progress=False)
    assert_same_training(history, tmp_path / "run", replay(config, patch_folder))


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize(
    ("clip_mode", "interrupted_after"),
    [("norm", 1), ("adjustable", 1), ("norm", 2)],  # the lr halves after epoch 2: resume before and after it
)
def test_resume_reproduces_an_uninterrupted_run_exactly(patch_folder, tmp_path, clip_mode, interrupted_after):
    """Weights, steps and the lr schedule of a resumed run equal those of a straight one."""
    config = tiny_config(arch="vdsr", arch_overrides=TINY, optimizer="sgd", lr=0.01, clip_mode=clip_mode, clip=0.01)
    straight_history = train(config, patch_folder, tmp_path / "straight", progress=False)

    def interrupt(result):
        if result.epoch == interrupted_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, patch_folder, tmp_path / "resumed", progress=False, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == interrupted_after
    assert not (tmp_path / "resumed" / "model.pt").exists()
    history = train(config, patch_folder, tmp_path / "resumed", resume=True, progress=False)
    assert [r.epoch for r in history] == [1, 2, 3] and [r.step for r in history] == [2, 4, 6]
    assert [r.lr for r in history] == [r.lr for r in straight_history] == [0.01, 0.01, 0.005]
    assert [r.loss for r in history] == [r.loss for r in straight_history]
    straight, resumed = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_resume_refuses_a_different_config(patch_folder, tmp_path):
    train(tiny_config(epochs=1), patch_folder, tmp_path / "run", progress=False)
    with pytest.raises(
        ValueError, match=r"another training config \(lr: 0\.001 -> 0\.5\); resume with the same"
    ) as error:
        train(tiny_config(epochs=1, lr=0.5), patch_folder, tmp_path / "run", resume=True, progress=False)
    assert "batch_size" not in str(error.value)  # only the keys that differ


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(patch_folder, tmp_path):
    def poison_patches(result):
        inputs = np.load(patch_folder / "inputs.npy", mmap_mode="r+")
        inputs[:] = np.nan
        inputs.flush()

    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 3.*checkpoint\.pt"):
        train(tiny_config(), patch_folder, tmp_path / "run", progress=False, on_epoch_end=poison_patches)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"learning_rate\n  Extra inputs are not permitted"):
        TrainConfig.model_validate({"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"lr\n  Input should be greater than 0"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match=r"optimizer\n  Input should be 'sgd' or 'adam'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown architecture 'srcnn'"):
        TrainConfig(arch="srcnn")
    with pytest.raises(ValueError, match=r"batch_size\n  Input should be a valid integer"):
        TrainConfig(batch_size=True)  # strict: a boolean is not a number


def test_channels_last_and_l1_sum_options_train(patch_folder, tmp_path):
    """channels_last and a summed L1 loss train as the NCHW replay does; amp is ignored on the CPU."""
    config = tiny_config(
        arch="vdsr", arch_overrides=TINY, epochs=2, channels_last=True, loss="l1", loss_reduction="sum", amp=True
    )
    history = train(config, patch_folder, tmp_path / "run", progress=False)
    # channels_last convolutions add up in another order: equal up to float32 rounding
    assert_same_training(history, tmp_path / "run", replay(config, patch_folder), atol=1e-5)
    assert history[0].loss > 1.0  # summed over 4 x 21 x 21 pixels, not averaged
    middle = load_checkpoint(tmp_path / "run" / "model.pt")["model"]["body.2.weight"]  # (8, 8, 3, 3)
    assert middle.is_contiguous(memory_format=torch.channels_last) and not middle.is_contiguous()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["grad_scaler"] is None  # no gradient scaling


def flat_pair(scale: int, error: float, side: int = 11) -> protocol.TestPair:
    """HR Y of 100 (``side`` x ``side`` once shaved) and a network input ``error`` grey levels above it."""
    hr_y = np.full((2 * scale + side, 2 * scale + side), 100.0)
    return protocol.TestPair(hr_y=hr_y, network_input=(hr_y + error) / 255.0, scale=scale)


class Shift(torch.nn.Module):
    """A stand-in network that adds ``delta`` grey levels to its input."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta / 255.0


def test_validation_psnr_per_scale_and_mean():
    """Per scale and overall mean of the protocol PSNR; PSNR of a flat error e is 20 log10(255 / e).

    Bicubic (no model) scores the inputs themselves; a model scores its output; its train/eval
    mode is left as it was.
    """
    pairs = [flat_pair(2, 4.0), flat_pair(2, 8.0), flat_pair(3, 16.0, side=5)]  # 5x5 once shaved: PSNR only
    db = {error: 20 * math.log10(255 / error) for error in (2.0, 4.0, 6.0, 8.0, 14.0, 16.0)}
    bicubic = validation_psnr(None, pairs, torch.device("cpu"))
    assert bicubic == pytest.approx({"x2": (db[4] + db[8]) / 2, "x3": db[16], "mean": (db[4] + db[8] + db[16]) / 3})
    for training in (True, False):
        model = Shift(-2.0).train(training)
        scores = validation_psnr(model, pairs, torch.device("cpu"))
        assert scores == pytest.approx({"x2": (db[2] + db[6]) / 2, "x3": db[14], "mean": (db[2] + db[6] + db[14]) / 3})
        assert model.training is training


def test_validation_images_are_centre_cropped(tmp_path):
    """Each image gives one pair per scale from its centre ``crop`` x ``crop`` square (or all of it, if smaller)."""
    gray = np.arange(30 * 41, dtype=np.uint32).reshape(30, 41).astype(np.uint8)  # gray: its Y is itself
    Image.fromarray(gray).save(tmp_path / "g.png")
    whole, cropped, wide = (load_validation_pairs(tmp_path, [2, 3], crop) for crop in (None, 20, 45))
    assert [pair.scale for pair in cropped] == [2, 3]
    assert np.array_equal(whole[0].hr_y, gray[:30, :40])
    assert np.array_equal(cropped[0].hr_y, gray[5:25, 10:30]) and np.array_equal(cropped[1].hr_y, gray[5:23, 10:28])
    assert np.array_equal(wide[0].hr_y, gray[:30, :40])  # larger than the image: all of it, cropped to x2


def test_progress_reports_epochs_pace_and_projection(patch_folder, image_folder, tmp_path, capsys, monkeypatch):
    """By default a bar per epoch (running loss, patches/s), a projection after 10 steps and a line per epoch.

    The loop's clock is replaced by one that advances 1 s per reading, so the pace is known: each
    step reads it once, and an epoch of 10 steps reads it 12 times (start, steps, end), so an epoch
    takes 11 s; after step 10 of the first epoch, 10 s have passed and 10 x 2 - 10 + 10 = 20 steps
    remain (the projection counts the first 10 again), 20 s or 0.01 h. progress=False prints nothing.
    """
    config = tiny_config(arch="vdsr", arch_overrides=TINY, epochs=2, steps_per_epoch=10, batch_size=8, val_scales=(2,))
    train(config, patch_folder, tmp_path / "quiet", val=image_folder, progress=False)
    assert capsys.readouterr() == ("", "")
    clock = iter(range(100, 10_000))
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    history = train(config, patch_folder, tmp_path / "loud", val=image_folder)
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert [(r.seconds, r.patches_per_second) for r in history] == [(11.0, 80 / 11)] * 2
    projection = "vdsr: 10 steps took 10.0 s on cpu; the remaining 20 steps are projected at 0.01 h"
    assert text.count(projection) == 1 and text.count("steps took") == 1
    bars = text.replace("\r", "\n").splitlines()
    for epoch, record in enumerate(history, start=1):
        done = [line for line in bars if line.startswith(f"vdsr epoch {epoch}/2: 100%")]
        assert done and "10/10" in done[-1] and ("step/s" in done[-1] or "s/step" in done[-1])
        assert f"loss={record.loss:.5f}, patches_s=8]" in done[-1]  # the last step: 10 x 8 patches in 10 s
    lines = [line for line in text.splitlines() if ": loss " in line]
    assert [line.split(":")[0] for line in lines] == ["vdsr epoch 1/2", "vdsr epoch 2/2"]
    gain = history[0].val_psnr - history[0].val_bicubic_psnr
    assert f"val PSNR {history[0].val_psnr:.3f} dB ({gain:+.3f} vs bicubic)" in lines[0]


def test_a_loss_that_is_nan_from_the_start_has_no_checkpoint_to_name(patch_folder, tmp_path):
    inputs = np.load(patch_folder / "inputs.npy", mmap_mode="r+")
    inputs[:] = np.nan
    inputs.flush()
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 1 .*last good checkpoint: none yet$"):
        train(tiny_config(arch_overrides=TINY), patch_folder, tmp_path / "run", progress=False)
