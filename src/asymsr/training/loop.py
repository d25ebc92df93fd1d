"""The training loop of ``asymsr train``: a VDSR-family network on a prepared patch set.

Outputs in the run folder (all written atomically):

* ``checkpoint.pt``: full training state after the last finished epoch (for ``--resume``);
* ``model.pt``: the inference checkpoint of the final weights (what ``evaluate`` takes);
* ``history.json``: a :class:`asymsr.schema.records.TrainingHistory` (loss, validation PSNR
  per scale, lr, seconds per epoch).

The run is deterministic on the CPU for a given seed: initial weights come from
``torch.manual_seed(seed)`` and the batches from :func:`asymsr.data.patches.epoch_plan`, so a
run resumed from ``checkpoint.pt`` ends with the same weights as an uninterrupted one.

The loop is split as BasicSR's ``SRModel`` splits it, without the class hierarchy:
:func:`_setup` (network, optimiser, schedule), :func:`_resume`, :func:`_feed` (one batch to the
device), :func:`_optimize` (one step), :func:`_validate`, :func:`_save`, and :func:`_run_epoch`.

Several GPUs (DistributedDataParallel): launch one process per GPU with ``torchrun``, e.g.::

    torchrun --standalone --nproc-per-node 4 -m asymsr.cli train --patches P --out RUN ...

or ``asymsr train --processes auto``, which does that for the GPUs it sees.
:mod:`asymsr.training.distributed` reads the ``torchrun`` environment; each process trains on
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from asymsr.data.patches import PatchBatches, epoch_plan, read_manifest
from asymsr.eval.inference import predict_tiled
from asymsr.nn.checkpoint import load_checkpoint, model_payload, save_checkpoint
from asymsr.nn.models import VDSR, build
from asymsr.schema.params import TrainConfig
from asymsr.schema.records import EpochRecord, TrainingHistory
from asymsr.sr.protocol import TestPair, make_test_pair, score
from asymsr.training import distributed
from asymsr.util.images import list_images, read_image

ESTIMATE_AFTER_STEPS = 10  # the first epoch reports a time projection after this many steps

EpochCallback = Callable[[EpochRecord], None]


class Objective:
    """What a step minimises, given the network, a batch of inputs and their labels.

    The default is the configured pixel loss against the labels; distillation
    (:class:`asymsr.training.distill.Distillation`) subclasses it. ``key()`` identifies the
    objective in ``checkpoint.pt``, so that a resume cannot switch it silently.
    """

    def __init__(self, criterion: nn.Module) -> None:
        self.criterion = criterion

    def __call__(
        self, network: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, scales: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss of one batch; ``scales`` (B,) is each patch's scale factor."""
        return self.criterion(network(inputs).float(), labels)

    def key(self) -> dict[str, Any]:
        return {"kind": "pixel"}


ObjectiveFactory = Callable[[nn.Module, VDSR], Objective]  # (pixel criterion, network) -> objective


def _pixel_objective(criterion: nn.Module, _model: VDSR) -> Objective:
    return Objective(criterion)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def load_validation_pairs(folder: str | os.PathLike[str], scales: list[int], crop: int | None) -> list[TestPair]:
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


@dataclass
class _Session:
    """Everything one training run holds (the state BasicSR keeps on its model object)."""

    config: TrainConfig
    patches: Path
    out: Path
    where: distributed.Placement
    model: VDSR  # the unwrapped network: validated, clipped and saved
    network: nn.Module  # what runs the batches: ``model``, or DDP around it
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    scaler: torch.amp.GradScaler
    objective: Objective
    grad_factor: int  # DDP averages the ranks' gradients: right for means, 1/world_size of a sum
    val_pairs: list[TestPair]
    val_bicubic: float | None
    show: bool  # this process prints progress
    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 0
    step: int = 0

    @property
    def device(self) -> torch.device:
        return self.where.device

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"


def train(
    config: TrainConfig,
    patches: str | os.PathLike[str],
    out: str | os.PathLike[str],
    val: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    start: dict[str, torch.Tensor] | None = None,
    objective: ObjectiveFactory | None = None,
) -> list[EpochRecord]:
    """Train ``config.arch`` on the patch folder ``patches``; write outputs to folder ``out``.

    Under ``torchrun`` every process calls this with the same arguments; see the module
    docstring for what is split and what only rank 0 does.

    Args:
        val: folder of held-out HR images for the per-epoch validation PSNR (optional).
        resume: continue from ``out/checkpoint.pt`` (its config must equal ``config``).
        on_epoch_end: called after each epoch's checkpoint is written (on rank 0 only); may
            raise to stop (the tuner uses it for pruning).
        start: initial weights (a state dict of ``config.arch``) instead of the seeded
            initialisation, e.g. a compressed teacher (``asymsr compress``).
        objective: builds the step's :class:`Objective` from the pixel criterion and the
            network being trained; default: the pixel loss against the labels.

    Returns:
        The history: one :class:`EpochRecord` per epoch, including resumed ones (the same on
        every rank).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (``checkpoint.pt`` keeps the last
            finished epoch).
        ValueError: under ``torchrun``, ``config.batch_size`` is not divisible by the number of
            processes; or ``resume`` with a checkpoint of another config.
    """
    where = distributed.placement(config.device)
    where.local_batch_size(config.batch_size)  # refuse an uneven split before any process waits on another
    with distributed.process_group(where):
        session = _setup(config, Path(patches), Path(out), val, progress, where, start, objective)
        if resume:
            _resume(session)
        manifest = read_manifest(session.patches)
        for epoch in range(session.start_epoch, config.epochs):
            record = _run_epoch(session, epoch, manifest["count"])
            # rank 0 validates, writes and reports; the others wait for its result, so none races ahead
            finished = functools.partial(_finish_epoch, session, record, epoch, on_epoch_end)
            session.history.append(where.run_on_main(finished))
        if not session.history:  # epochs 0: the initial weights are the result
            where.run_on_main(lambda: _save(session, 0, []))
        where.run_on_main(lambda: save_checkpoint(session.out / "model.pt", model_payload(config.arch, session.model)))
        return session.history


def _setup(
    config: TrainConfig,
    patches: Path,
    out: Path,
    val: str | os.PathLike[str] | None,
    progress: bool,
    where: distributed.Placement,
    start: dict[str, torch.Tensor] | None = None,
    objective: ObjectiveFactory | None = None,
) -> _Session:
    """Validation data, then the network (seeded), optimiser, schedule, gradient scaler and loss."""
    device = where.device
    val_pairs = load_validation_pairs(val, config.val_scales, config.val_crop) if val else []
    val_bicubic = where.run_on_main(lambda: validation_psnr(None, val_pairs, device)["mean"]) if val_pairs else None
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build(config.arch, **config.arch_overrides)
    if start is not None:
        model.load_state_dict(start)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    network: nn.Module = model
    if where.distributed:  # DDP broadcasts rank 0's weights and all-reduces the gradients during backward()
        network = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    network.train()
    return _Session(
        config=config,
        patches=patches,
        out=out,
        where=where,
        model=model,
        network=network,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        objective=(objective or _pixel_objective)(_loss_function(config), model),
        grad_factor=where.world_size if config.loss_reduction == "sum" else 1,
        val_pairs=val_pairs,
        val_bicubic=val_bicubic,
        show=progress and where.is_main,
    )


def differences(saved: dict[str, Any], given: dict[str, Any]) -> str:
    """``key: saved -> given`` for each key whose value differs (the rest would bury them)."""
    keys = sorted(set(saved) | set(given), key=str)
    return "; ".join(
        f"{k}: {saved.get(k, '<absent>')!r} -> {given.get(k, '<absent>')!r}"
        for k in keys
        if saved.get(k) != given.get(k)
    )


def _resume(session: _Session) -> None:
    """Load the full training state from ``checkpoint.pt`` (every rank does)."""
    state = load_checkpoint(session.checkpoint_path)
    for what, saved, given in (
        ("training config", state.get("train_config") or {}, session.config.to_dict()),
        ("objective", state.get("objective", {"kind": "pixel"}), session.objective.key()),
    ):
        if saved != given:
            raise ValueError(
                f"{session.checkpoint_path}: was written with another {what} ({differences(saved, given)}); "
                "resume with the same settings, or train into a new --out"
            )
    session.model.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    if state.get("grad_scaler"):
        session.scaler.load_state_dict(state["grad_scaler"])
    session.start_epoch, session.step = state["epoch"], state["step"]
    session.history = [EpochRecord.model_validate(record) for record in state["history"]]


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


def _loader(session: _Session, epoch: int, count: int) -> tuple[DataLoader, int]:
    """This rank's batches of ``epoch`` and the number of steps in the epoch."""
    config, where = session.config, session.where
    indices, transforms = epoch_plan(count, config.batch_size, config.seed, epoch, config.steps_per_epoch)
    loader = DataLoader(
        PatchBatches(session.patches, where.shard(indices), where.shard(transforms)),
        batch_size=None,
        shuffle=False,
        num_workers=config.workers,
        pin_memory=session.device.type == "cuda",
    )
    return loader, len(indices)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # inputs, labels, scales


def _feed(session: _Session, batch: Batch) -> Batch:
    """One batch of (inputs, labels, scales) on the device, inputs in the configured memory format."""
    inputs, labels, scales = (tensor.to(session.device, non_blocking=True) for tensor in batch)
    if session.config.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, labels, scales


def _optimize(session: _Session, batch: Batch, lr: float, epoch: int) -> float:
    """One optimiser step; returns the loss over all ranks (raises on NaN or infinity, on every rank)."""
    config = session.config
    with torch.autocast(device_type=session.device.type, dtype=torch.float16, enabled=session.scaler.is_enabled()):
        loss = session.objective(session.network, *batch)
    global_loss = session.where.all_reduce(loss, config.loss_reduction)  # every rank sees the same value
    if not torch.isfinite(global_loss):
        last = session.checkpoint_path if session.checkpoint_path.exists() else "none yet"
        raise TrainingDiverged(
            f"loss became {global_loss.item()} at epoch {epoch + 1}, step {session.step + 1} (lr {lr:g}); "
            f"last good checkpoint: {last}"
        )
    session.optimizer.zero_grad(set_to_none=True)
    session.scaler.scale(loss * session.grad_factor if session.grad_factor != 1 else loss).backward()
    session.scaler.unscale_(session.optimizer)
    _clip_gradients(config, session.model, lr)  # after backward(), so on the all-reduced gradient
    session.scaler.step(session.optimizer)
    session.scaler.update()
    session.step += 1
    return global_loss.item()


def _run_epoch(session: _Session, epoch: int, count: int) -> EpochRecord:
    """Train one epoch; returns its record without validation (that is rank 0's, after)."""
    config = session.config
    loader, steps = _loader(session, epoch, count)
    lr = session.optimizer.param_groups[0]["lr"]
    started = time.perf_counter()
    total_loss = 0.0
    bar = tqdm(loader, desc=f"{config.arch} epoch {epoch + 1}/{config.epochs}", unit="step", disable=not session.show)
    for batch_index, batch in enumerate(bar):
        total_loss += _optimize(session, _feed(session, batch), lr, epoch)
        elapsed = time.perf_counter() - started
        rate = (batch_index + 1) * config.batch_size / elapsed
        bar.set_postfix(loss=f"{total_loss / (batch_index + 1):.5f}", patches_s=f"{rate:.0f}")
        if session.show and epoch == session.start_epoch and batch_index + 1 == ESTIMATE_AFTER_STEPS:
            _report_projection(session, elapsed, steps)
    bar.close()
    seconds = time.perf_counter() - started
    session.scheduler.step()
    return EpochRecord(
        epoch=epoch + 1,
        step=session.step,
        loss=total_loss / max(1, steps),
        lr=lr,
        seconds=seconds,
        patches_per_second=steps * config.batch_size / seconds,
    )


def _report_projection(session: _Session, elapsed: float, steps_per_epoch: int) -> None:
    """After the first steps, how long the whole run will take at this pace."""
    remaining = steps_per_epoch * session.config.epochs - session.step + ESTIMATE_AFTER_STEPS
    projected = elapsed / ESTIMATE_AFTER_STEPS * remaining
    tqdm.write(
        f"{session.config.arch}: {ESTIMATE_AFTER_STEPS} steps took {elapsed:.1f} s on {session.where.describe()}; "
        f"the remaining {remaining} steps are projected at {projected / 3600:.2f} h (validation not included)"
    )


def _validate(session: _Session, record: EpochRecord) -> None:
    """Fill the record's validation PSNR (mean, per scale, and the bicubic baseline)."""
    if not session.val_pairs:
        return
    scores = validation_psnr(session.model, session.val_pairs, session.device)
    record.val_psnr = scores.pop("mean")
    record.val_psnr_per_scale = scores
    record.val_bicubic_psnr = session.val_bicubic


def _finish_epoch(
    session: _Session, record: EpochRecord, epoch: int, on_epoch_end: EpochCallback | None
) -> EpochRecord:
    """Validate, save and report a finished epoch (rank 0's duty)."""
    _validate(session, record)
    done = [*session.history, record]
    _save(session, epoch + 1, done)
    if session.show:
        _print_epoch(session, record, done)
    if on_epoch_end is not None:
        on_epoch_end(record)
    return record


def _print_epoch(session: _Session, record: EpochRecord, done: list[EpochRecord]) -> None:
    config = session.config
    shown = ""
    if record.val_psnr is not None:
        gain = record.val_psnr - session.val_bicubic
        shown = f", val PSNR {record.val_psnr:.3f} dB ({gain:+.3f} vs bicubic)"
    projected = sum(r.seconds for r in done) / len(done) * config.epochs
    tqdm.write(
        f"{config.arch} epoch {record.epoch}/{config.epochs}: loss {record.loss:.6f}{shown}, "
        f"{record.seconds:.1f} s (whole run projected at {projected / 60:.1f} min on {session.where.describe()})"
    )


def _save(session: _Session, epochs_done: int, history: list[EpochRecord]) -> None:
    """The full training state to ``checkpoint.pt`` and the history to ``history.json``."""
    payload: dict[str, Any] = model_payload(session.config.arch, session.model)
    payload.update(
        {
            "train_config": session.config.to_dict(),
            "objective": session.objective.key(),
            "epoch": epochs_done,
            "step": session.step,
            "optimizer": session.optimizer.state_dict(),
            "scheduler": session.scheduler.state_dict(),
            "grad_scaler": session.scaler.state_dict() if session.scaler.is_enabled() else None,
            "history": [record.model_dump() for record in history],
        }
    )
    save_checkpoint(session.checkpoint_path, payload)
    TrainingHistory(arch=session.config.arch, epochs=history).write(session.out / "history.json")
