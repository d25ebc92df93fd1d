"""``asymsr train``: train a VDSR-family network on a prepared patch set.

Outputs in the run folder (all written atomically):

* ``checkpoint.pt``: full training state after the last finished epoch (for ``--resume``);
* ``model.pt``: the inference checkpoint of the final weights (what ``evaluate`` takes);
* ``history.json``: one record per epoch (loss, validation PSNR per scale, lr, seconds).

The run is deterministic on the CPU for a given seed: initial weights come from
``torch.manual_seed(seed)`` and the batches from :func:`asymsr.patches.epoch_plan`, so a run
resumed from ``checkpoint.pt`` ends with the same weights as an uninterrupted one.

Several GPUs (DistributedDataParallel): launch one process per GPU with ``torchrun``, e.g.::

    torchrun --standalone --nproc-per-node 4 -m asymsr.cli train --patches P --out RUN ...
    torchrun --standalone --nproc-per-node 4 "$(command -v asymsr)" train ...

:mod:`asymsr.distributed` reads the ``torchrun`` environment; each process trains on
``cuda:LOCAL_RANK`` (device ``auto`` or ``cuda``; backend NCCL), or on the CPU with gloo.
``batch_size`` stays the *global* batch and must be divisible by the number of processes:
every rank draws the same epoch plan and takes its own contiguous slice of each batch, so the
ranks together see exactly the single-process batches. DDP averages the gradients, which for
``loss_reduction="mean"`` is the global mean; with ``"sum"`` each rank's loss is multiplied by
the number of processes so that the gradient is the global sum. Clipping runs on the
all-reduced gradient, the reported loss (and the NaN check that stops every rank together) is
all-reduced, and so the loss curve equals the single-process one up to floating-point
rounding. Only rank 0 validates, writes the outputs, prints and calls ``on_epoch_end``; the
others wait for it after each epoch. ``--resume`` works with any number of processes (every
rank loads ``checkpoint.pt``); the saved weights never carry DDP's ``module.`` prefix.
"""

from __future__ import annotations

import functools
import os
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from asymsr import distributed
from asymsr.checkpoint import load_checkpoint, model_payload, save_checkpoint
from asymsr.fsutil import write_json
from asymsr.images import list_images, read_image
from asymsr.inference import predict_tiled
from asymsr.models import ARCHITECTURES, VDSR, build
from asymsr.patches import PatchBatches, epoch_plan, read_manifest
from asymsr.protocol import TestPair, check_scale, make_test_pair, score

ESTIMATE_AFTER_STEPS = 10  # the first epoch reports a time projection after this many steps


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Training settings. Defaults follow the VDSR paper except where noted.

    Attributes:
        arch: registered architecture name (``vdsr`` or ``asym_vdsr``).
        arch_overrides: keyword overrides for :func:`asymsr.models.build`, e.g. ``{"init": "he_fan_out"}``.
        epochs: number of epochs (paper: 80).
        steps_per_epoch: batches per epoch; ``None`` = one pass over all patches.
        batch_size: patches per step (paper: 64).
        optimizer: ``"sgd"`` (with ``momentum``, paper) or ``"adam"``.
        lr: initial learning rate (paper: 0.1 with SGD).
        momentum: SGD momentum (paper: 0.9); ignored by Adam.
        weight_decay: L2 penalty (paper: 1e-4).
        lr_step_epochs: multiply the lr by ``lr_gamma`` every this many epochs (paper: 20 and 0.1).
        lr_gamma: multiplicative lr decay per step, in (0, 1].
        clip_mode: ``"none"``; ``"norm"``: global gradient norm <= ``clip``; ``"adjustable"``:
            the paper's clipping of each gradient element to [-clip/lr, clip/lr] at the current lr.
        clip: the bound for ``clip_mode`` (> 0).
        loss: ``"mse"`` or ``"l1"``.
        loss_reduction: ``"mean"`` over pixels, or ``"sum"`` as the reference PyTorch VDSR does.
        seed: seeds the initial weights and the batch order.
        device: ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        amp: float16 mixed precision with gradient scaling (CUDA only; ignored on CPU).
        channels_last: use the channels-last memory format (can be faster on GPUs).
        workers: DataLoader worker processes (0 = load in the training process).
        val_scales: scales used for the per-epoch validation PSNR.
        val_crop: crop validation images to at most this many pixels per side (centre), to
            bound validation time; ``None`` = whole images.
    """

    arch: str = "vdsr"
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 80
    steps_per_epoch: int | None = None
    batch_size: int = 64
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: int = 20
    lr_gamma: float = 0.1
    clip_mode: Literal["none", "norm", "adjustable"] = "norm"
    clip: float = 0.4
    loss: Literal["mse", "l1"] = "mse"
    loss_reduction: Literal["mean", "sum"] = "mean"
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    workers: int = 0
    val_scales: tuple[int, ...] = (2, 3, 4)
    val_crop: int | None = 256

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))
        self.val_scales = tuple(self.val_scales)
        if self.arch not in ARCHITECTURES:
            problems.append(f"arch={self.arch!r} is not one of {sorted(ARCHITECTURES)}")
        for name in ("epochs", "batch_size", "lr_step_epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            problems.append(f"steps_per_epoch={self.steps_per_epoch!r} must be >= 1 or None")
        if not self.lr > 0:
            problems.append(f"lr={self.lr!r} must be > 0")
        if not 0 < self.lr_gamma <= 1:
            problems.append(f"lr_gamma={self.lr_gamma!r} must be in (0, 1]")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            problems.append(f"weight_decay={self.weight_decay!r} must be >= 0 and momentum={self.momentum!r} in [0, 1)")
        choices = {
            "optimizer": ("sgd", "adam"),
            "clip_mode": ("none", "norm", "adjustable"),
            "loss": ("mse", "l1"),
            "loss_reduction": ("mean", "sum"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} must be one of {allowed}")
        if self.clip_mode != "none" and not self.clip > 0:
            problems.append(f"clip={self.clip!r} must be > 0 with clip_mode={self.clip_mode!r}")
        if self.workers < 0:
            problems.append(f"workers={self.workers!r} must be >= 0")
        for scale in self.val_scales:
            try:
                check_scale(scale)
            except ValueError as error:
                problems.append(f"val_scales: {error}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON- and checkpoint-safe values."""
        values = asdict(self)
        values["val_scales"] = list(self.val_scales)
        return values


def _type_problems(config: TrainConfig) -> list[str]:
    """Fields whose value has the wrong type (ints are accepted for floats, bools never for numbers)."""
    problems = []
    hints = typing.get_type_hints(TrainConfig)
    for spec in fields(config):
        value = getattr(config, spec.name)
        hint = hints[spec.name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
        if not any(_matches(value, option) for option in allowed):
            expected = hint.__name__ if isinstance(hint, type) else str(hint)
            problems.append(f"{spec.name}={value!r} has type {type(value).__name__}, expected {expected}")
    return problems


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return isinstance(value, str)  # the allowed values are checked with a clearer message below
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (tuple, list)) and all(_matches(item, typing.get_args(hint)[0]) for item in value)
    return isinstance(value, origin or hint)


@dataclass
class EpochResult:
    """What one finished epoch reports (also one record of ``history.json``)."""

    epoch: int
    step: int
    loss: float
    lr: float
    seconds: float
    patches_per_second: float
    val_psnr: float | None = None
    val_psnr_per_scale: dict[str, float] = field(default_factory=dict)
    val_bicubic_psnr: float | None = None


EpochCallback = Callable[[EpochResult], None]


def load_validation_pairs(folder: str | os.PathLike[str], scales: tuple[int, ...], crop: int | None) -> list[TestPair]:
    """Test pairs of every image in ``folder`` at every scale, centre-cropped to ``crop`` pixels."""
    pairs = []
    for path in list_images(folder):
        image = read_image(path)
        if crop is not None:
            top = max(0, (image.shape[0] - crop) // 2)
            left = max(0, (image.shape[1] - crop) // 2)
            image = image[top : top + crop, left : left + crop]
        pairs.extend(make_test_pair(image, scale) for scale in scales)
    return pairs


def validation_psnr(model: nn.Module | None, pairs: list[TestPair], device: torch.device) -> dict[str, float]:
    """Mean protocol PSNR (dB) per scale (keys ``"x2"``...) and over all pairs (key ``"mean"``).

    ``model=None`` scores the bicubic input itself, the baseline that a model must beat.
    """
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    per_scale: dict[str, list[float]] = {}
    for pair in pairs:
        output = pair.network_input if model is None else predict_tiled(model, pair.network_input, device)
        per_scale.setdefault(f"x{pair.scale}", []).append(score(pair, output, with_ssim=False)["psnr"])
    if model is not None:
        model.train(was_training)
    result = {key: float(np.mean(values)) for key, values in per_scale.items()}
    result["mean"] = float(np.mean([value for values in per_scale.values() for value in values]))
    return result


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _loss_function(config: TrainConfig) -> nn.Module:
    loss_class = nn.MSELoss if config.loss == "mse" else nn.L1Loss
    return loss_class(reduction=config.loss_reduction)


def _clip_gradients(config: TrainConfig, model: nn.Module, lr: float) -> None:
    if config.clip_mode == "norm":
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    elif config.clip_mode == "adjustable":
        nn.utils.clip_grad_value_(model.parameters(), config.clip / lr)


def train(
    config: TrainConfig,
    patches: str | os.PathLike[str],
    out: str | os.PathLike[str],
    val: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> list[EpochResult]:
    """Train ``config.arch`` on the patch folder ``patches``; write outputs to folder ``out``.

    Under ``torchrun`` every process calls this with the same arguments; see the module
    docstring for what is split and what only rank 0 does.

    Args:
        val: folder of held-out HR images for the per-epoch validation PSNR (optional).
        resume: continue from ``out/checkpoint.pt`` (its config must equal ``config``).
        on_epoch_end: called after each epoch's checkpoint is written (on rank 0 only); may
            raise to stop (the tuner uses it for pruning).

    Returns:
        The history: one :class:`EpochResult` per epoch, including resumed ones (the same on
        every rank).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (``checkpoint.pt`` keeps the last
            finished epoch).
        ValueError: under ``torchrun``, ``config.batch_size`` is not divisible by the number of
            processes.
    """
    where = distributed.placement(config.device)
    where.local_batch_size(config.batch_size)  # refuse an uneven split before any process waits on another
    with distributed.process_group(where):
        return _train(config, patches, Path(out), val, resume, progress, on_epoch_end, where)


def _train(
    config: TrainConfig,
    patches: str | os.PathLike[str],
    out: Path,
    val: str | os.PathLike[str] | None,
    resume: bool,
    progress: bool,
    on_epoch_end: EpochCallback | None,
    where: distributed.Placement,
) -> list[EpochResult]:
    manifest = read_manifest(patches)
    device = where.device
    show = progress and where.is_main
    use_amp = config.amp and device.type == "cuda"
    val_pairs = load_validation_pairs(val, config.val_scales, config.val_crop) if val else []
    val_bicubic = where.run_on_main(lambda: validation_psnr(None, val_pairs, device)["mean"]) if val_pairs else None

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model: VDSR = build(config.arch, **config.arch_overrides).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[EpochResult] = []
    start_epoch, step = 0, 0
    checkpoint_path = out / "checkpoint.pt"
    if resume:  # every rank loads the checkpoint
        state = load_checkpoint(checkpoint_path)
        if state.get("train_config") != config.to_dict():
            raise ValueError(
                f"{checkpoint_path}: was written with a different training config; "
                f"saved {state.get('train_config')}, given {config.to_dict()}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        start_epoch, step = state["epoch"], state["step"]
        history = [EpochResult(**record) for record in state["history"]]
    criterion = _loss_function(config)
    # DDP averages the ranks' gradients: right for equal local means, 1/world_size of the sum for "sum"
    grad_factor = where.world_size if config.loss_reduction == "sum" else 1
    # DDP broadcasts rank 0's weights and all-reduces the gradients during backward();
    # ``model`` stays the unwrapped network for validation, clipping and saving
    network: nn.Module = model
    if where.distributed:
        network = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    network.train()

    def finish_epoch(result: EpochResult, epoch: int, step: int) -> EpochResult:
        """Validate, save and report a finished epoch (rank 0's duty)."""
        if val_pairs:
            scores = validation_psnr(model, val_pairs, device)
            result.val_psnr = scores.pop("mean")
            result.val_psnr_per_scale = scores
            result.val_bicubic_psnr = val_bicubic
        done = [*history, result]
        _save_state(out, config, model, optimizer, scheduler, scaler, epoch + 1, step, done)
        if show:
            shown = (
                ""
                if result.val_psnr is None
                else (f", val PSNR {result.val_psnr:.3f} dB ({result.val_psnr - val_bicubic:+.3f} vs bicubic)")
            )
            projected = sum(r.seconds for r in done) / len(done) * config.epochs
            tqdm.write(
                f"{config.arch} epoch {epoch + 1}/{config.epochs}: loss {result.loss:.6f}{shown}, "
                f"{result.seconds:.1f} s (whole run projected at {projected / 60:.1f} min on {where.describe()})"
            )
        if on_epoch_end is not None:
            on_epoch_end(result)
        return result

    for epoch in range(start_epoch, config.epochs):
        indices, transforms = epoch_plan(
            manifest["count"], config.batch_size, config.seed, epoch, config.steps_per_epoch
        )
        loader = DataLoader(
            PatchBatches(patches, where.shard(indices), where.shard(transforms)),
            batch_size=None,
            shuffle=False,
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
        )
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        total_loss = 0.0
        bar = tqdm(loader, desc=f"{config.arch} epoch {epoch + 1}/{config.epochs}", unit="step", disable=not show)
        for batch_index, (inputs, labels) in enumerate(bar):
            inputs = inputs.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if config.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss = criterion(network(inputs).float(), labels)
            global_loss = where.all_reduce(loss, config.loss_reduction)  # every rank sees the same value
            if not torch.isfinite(global_loss):
                raise TrainingDiverged(
                    f"loss became {global_loss.item()} at epoch {epoch + 1}, step {step + 1} (lr {lr:g}); "
                    f"last good checkpoint: {checkpoint_path if checkpoint_path.exists() else 'none yet'}"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss * grad_factor if grad_factor != 1 else loss).backward()
            scaler.unscale_(optimizer)
            _clip_gradients(config, model, lr)  # after backward(), so on the all-reduced gradient
            scaler.step(optimizer)
            scaler.update()
            step += 1
            total_loss += global_loss.item()
            elapsed = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{total_loss / (batch_index + 1):.5f}",
                patches_s=f"{(batch_index + 1) * config.batch_size / elapsed:.0f}",
            )
            if show and epoch == start_epoch and batch_index + 1 == ESTIMATE_AFTER_STEPS:
                total_steps = len(indices) * config.epochs
                projected = elapsed / ESTIMATE_AFTER_STEPS * (total_steps - step + ESTIMATE_AFTER_STEPS)
                tqdm.write(
                    f"{config.arch}: {ESTIMATE_AFTER_STEPS} steps took {elapsed:.1f} s on {where.describe()}; the "
                    f"remaining {total_steps - step + ESTIMATE_AFTER_STEPS} steps are projected at "
                    f"{projected / 3600:.2f} h (validation not included)"
                )
        bar.close()
        seconds = time.perf_counter() - started
        steps_done = len(indices)
        result = EpochResult(
            epoch=epoch + 1,
            step=step,
            loss=total_loss / max(1, steps_done),
            lr=lr,
            seconds=seconds,
            patches_per_second=steps_done * config.batch_size / seconds,
        )
        scheduler.step()
        # rank 0 validates, writes and reports; the others wait for its result, so none races ahead
        history.append(where.run_on_main(functools.partial(finish_epoch, result, epoch, step)))
    where.run_on_main(lambda: save_checkpoint(out / "model.pt", model_payload(config.arch, model)))
    return history


def _save_state(
    out: Path,
    config: TrainConfig,
    model: VDSR,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    epoch: int,
    step: int,
    history: list[EpochResult],
) -> None:
    payload = model_payload(config.arch, model)
    payload.update(
        {
            "train_config": config.to_dict(),
            "epoch": epoch,
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "history": [asdict(record) for record in history],
        }
    )
    save_checkpoint(out / "checkpoint.pt", payload)
    write_json(out / "history.json", [asdict(record) for record in history])
