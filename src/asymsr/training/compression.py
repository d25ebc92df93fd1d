"""``asymsr compress``: a trained VDSR -> an Asym_VDSR, in three steps.

1. **Closed form** (:func:`asymsr.nn.factorize.closed_form`): each middle 3x3 layer becomes
   its nearest rank-r pair; the first and last layers are copied.
2. **Refit** (:mod:`asymsr.training.refit`, optional): the 1x3 factors re-solved by least
   squares on real activations. Kept only if it brings the student's output closer to the
   teacher's on training patches that the refit did not see; both figures are recorded.
3. **Distillation** (:mod:`asymsr.training.distill`): fine-tuning with the training loop of
   ``asymsr train`` (same resumable checkpoints, history, progress and MLflow logging), on a
   loss that mixes the teacher's output, the HR label and block features.

Outputs in the run folder: ``model.pt`` (an ordinary Asym_VDSR checkpoint, for ``evaluate``
and ``upscale``), ``compression.json`` (:class:`asymsr.schema.records.CompressionRecord`),
and ``checkpoint.pt`` and ``history.json`` as ``train`` writes them (at epoch 0 and empty
when ``steps`` is 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from asymsr.data.patches import read_manifest
from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint, model_payload, save_checkpoint
from asymsr.nn.devices import resolve_device
from asymsr.nn.ensemble import with_views
from asymsr.nn.factorize import closed_form
from asymsr.nn.models import VDSR
from asymsr.schema.params import CompressConfig, TrainConfig
from asymsr.schema.records import CompressionRecord, CompressionStep, LayerFitRecord
from asymsr.sr.protocol import TestPair
from asymsr.training.distill import Distillation, patch_mse, patch_weights, scale_weights
from asymsr.training.loop import EpochCallback, load_validation_pairs, train, validation_psnr
from asymsr.training.refit import refit

RECORD = "compression.json"
START = "start.pt"  # the student before fine-tuning: what model.pt holds if the fine-tuning did not help


@dataclass
class Job:
    """One compression: the teacher, the settings, and where the data and outputs are."""

    teacher: VDSR
    source: str  # how the user named the teacher (path, URI)
    sha256: str
    config: CompressConfig
    patches: Path
    out: Path
    val: Path | None = None
    progress: bool = True
    on_epoch_end: EpochCallback | None = None
    history: list[CompressionStep] = field(default_factory=list)
    layers: list[LayerFitRecord] = field(default_factory=list)

    @cached_property
    def finetune(self) -> TrainConfig:
        return self.config.finetune_config(channels=self.teacher.channels, depth=self.teacher.depth)

    @cached_property
    def target(self) -> nn.Module:
        """What the student is taught and judged against: the teacher, or its self-ensemble
        (``loss.teacher_views``)."""
        return with_views(self.teacher, self.config.loss.teacher_views)

    @cached_property
    def judge(self) -> _Judge:
        """The teacher's outputs on the held-out patches, computed once for every step's comparison."""
        return _Judge.of(self, resolve_device(self.finetune.device))

    @cached_property
    def per_scale(self) -> dict[int, float] | None:
        """The loss's weight of each scale (``loss.scale_balance``), from the teacher's error on the
        refit's patches; None when the balance is 0."""
        balance = self.config.loss.scale_balance
        if balance == 0:
            return None
        chosen = _draw(self, 0)
        inputs, labels = (_rows(self.patches / name, chosen) for name in ("inputs.npy", "labels.npy"))
        scales = np.load(self.patches / "scales.npy", mmap_mode="r")
        outputs = _batched(self.teacher, inputs, resolve_device(self.finetune.device))
        errors = patch_mse(outputs, labels)
        drawn = torch.from_numpy(scales[chosen].astype(np.int64))
        counts = dict(zip(*np.unique(scales, return_counts=True), strict=True))
        present = [int(scale) for scale in counts if (drawn == int(scale)).any()]
        if len(present) < len(counts):  # a scale the sample missed would get no weight at all
            raise ValueError(f"{self.patches}: the {len(chosen)} refit patches miss a scale; raise refit_patches")
        measured = {scale: float(errors[drawn == scale].mean()) for scale in present}
        return scale_weights(measured, {int(k): int(v) for k, v in counts.items()}, balance)


def check_before_start(patches: Path, out: Path, resume: bool) -> None:
    """Refuse what would stop a compression halfway; called before anything is written (by
    :func:`compress`, and by the stage before it opens its MLflow run).

    Raises:
        ValueError: ``patches`` is not a patch folder, or holds fewer than 2 patches.
        FileNotFoundError: ``resume``, and ``out`` lacks a file that resuming reads.
    """
    if read_manifest(patches)["count"] < 2:
        raise ValueError(f"{patches} holds fewer than 2 patches")
    missing = [name for name in ("checkpoint.pt", RECORD, START) if resume and not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{out} has no {' and no '.join(missing)} to resume from")


def compress(job: Job, resume: bool = False) -> CompressionRecord:
    """Run the three steps; returns the record also written to ``out/compression.json``.

    ``resume`` continues the fine-tuning from ``out/checkpoint.pt`` (steps 1 and 2 are not
    repeated: their record is read back).

    Raises:
        FileNotFoundError: ``resume`` without ``checkpoint.pt`` and ``compression.json`` in ``out``.
        ValueError: ``resume`` with another teacher or rank than the record's; fewer than 2 patches.
    """
    check_before_start(job.patches, job.out, resume)
    if resume:
        record = _resumable(job)
        job.history = [step for step in record.history if step.name != "distilled"]
        job.layers = record.layers
        final = _distil(job, None, resume=True)
    else:
        job.out.mkdir(parents=True, exist_ok=True)
        student = _initial_student(job)
        _record(job, student, finished=False).write(job.out / RECORD)  # what steps 1-2 gave, if step 3 dies
        final = _distil(job, student, resume=False)
    record = _record(job, final, finished=True)
    record.write(job.out / RECORD)
    return record


def _resumable(job: Job) -> CompressionRecord:
    """The record of the run to resume, checked against ``job``."""
    record = CompressionRecord.read(job.out / RECORD)
    if (record.teacher_sha256, record.rank) != (job.sha256, job.config.rank):
        raise ValueError(
            f"{job.out / RECORD}: was made from teacher {record.teacher_sha256[:12]} at rank {record.rank}; "
            f"given teacher {job.sha256[:12]} at rank {job.config.rank}"
        )
    return record


def _initial_student(job: Job) -> VDSR:
    """Steps 1 and 2, each scored; the better of the closed form and the refit."""
    device = resolve_device(job.finetune.device)
    pairs = load_validation_pairs(job.val, job.finetune.val_scales, job.finetune.val_crop) if job.val else []
    judge = job.judge
    for name, model in (("teacher", job.teacher), ("bicubic", None)):
        job.history.append(_scored(name, model, pairs, judge, device, 0.0))
        _say(job, job.history[-1])
    started = time.perf_counter()
    student, fits = closed_form(job.teacher, job.config.rank)
    job.layers = [
        LayerFitRecord(layer=f.layer, energy_kept=f.energy_kept, relative_error=f.relative_error) for f in fits
    ]
    job.history.append(_scored("closed_form", student, pairs, judge, device, time.perf_counter() - started))
    _say(job, job.history[-1])
    if not job.config.refit:
        return student
    started = time.perf_counter()
    refitted = refit(student, job.teacher, judge.sample(job, 0), job.config.refit_sweeps)
    step = _scored("refit", refitted, pairs, judge, device, time.perf_counter() - started)
    step.kept = step.teacher_mse < job.history[-1].teacher_mse  # type: ignore[operator]
    job.history.append(step)
    _say(job, step)
    return refitted if step.kept else student


@dataclass
class _Judge:
    """The teacher's outputs on held-out training patches: what the steps are compared on."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor  # (N,) each patch's weight in the loss (all 1 without scale_balance)

    @classmethod
    def of(cls, job: Job, device: torch.device) -> _Judge:
        chosen = _draw(job, 1)
        inputs = _rows(job.patches / "inputs.npy", chosen)
        weights = torch.ones(len(chosen))
        if job.per_scale is not None:
            scales = np.load(job.patches / "scales.npy", mmap_mode="r")[chosen]
            weights = patch_weights(job.per_scale, torch.from_numpy(scales.astype(np.int64)))
        with torch.no_grad():
            return cls(inputs, _batched(job.target, inputs, device), weights)

    @staticmethod
    def sample(job: Job, part: int) -> torch.Tensor:
        """The inputs of part 0 (the refit's) or 1 (the judge's) of the draw (:func:`_draw`)."""
        return _rows(job.patches / "inputs.npy", _draw(job, part))

    def mse(self, model: VDSR | None, device: torch.device) -> float:
        """The output's MSE to the teacher's, weighted per patch as the loss weighs it."""
        outputs = self.inputs if model is None else _batched(model, self.inputs, device)
        return float((self.weights * patch_mse(outputs, self.targets)).mean())


def _draw(job: Job, part: int) -> np.ndarray:
    """Part 0 (the refit's) or 1 (the judge's) of a seeded draw of 2 x ``refit_patches`` patch indices, sorted."""
    count = read_manifest(job.patches)["count"]
    generator = torch.Generator().manual_seed(job.finetune.seed)
    order = torch.randperm(count, generator=generator)
    size = min(job.config.refit_patches, count // 2) or 1
    return np.sort(order[part * size : (part + 1) * size].numpy())


def _rows(array: Path, chosen: np.ndarray) -> torch.Tensor:
    """Rows ``chosen`` of a (N, P, P) patch array as float32 (n, 1, P, P)."""
    return torch.from_numpy(np.load(array, mmap_mode="r")[chosen].astype(np.float32))[:, None]


@torch.no_grad()
def _batched(model: nn.Module, inputs: torch.Tensor, device: torch.device, size: int = 64) -> torch.Tensor:
    model = model.to(device).eval()
    return torch.cat([model(inputs[i : i + size].to(device)).cpu() for i in range(0, len(inputs), size)])


def _scored(
    name: str, model: VDSR | None, pairs: list[TestPair], judge: _Judge, device: torch.device, seconds: float
) -> CompressionStep:
    """The step's validation PSNR (when there are validation images) and output MSE to the teacher."""
    step = CompressionStep(name=name, seconds=seconds, teacher_mse=judge.mse(model, device))  # type: ignore[arg-type]
    if pairs:
        scores = validation_psnr(model.to(device) if model is not None else None, pairs, device)
        step.val_psnr = scores.pop("mean")
        step.val_psnr_per_scale = scores
    return step


def _distil(job: Job, student: VDSR | None, resume: bool) -> VDSR:
    """Step 3: fine-tune with the training loop; returns the weights that ``model.pt`` holds.

    With ``steps`` 0 the loop runs no epochs and writes the initial weights as ``train`` would
    (``model.pt``, ``checkpoint.pt``, an empty ``history.json``), so the outputs have one shape.
    Like the refit, the fine-tuned weights are kept only if they bring the output closer to the
    teacher's on the held-out patches; otherwise ``model.pt`` is the starting point (saved as
    ``start.pt``), and ``checkpoint.pt`` still holds the fine-tuned state.
    """
    teacher = job.teacher
    if student is not None:
        save_checkpoint(job.out / START, model_payload("asym_vdsr", student))

    made: list[Distillation] = []

    def objective(criterion: nn.Module, model: VDSR) -> Distillation:
        device = next(model.parameters()).device
        memory = torch.channels_last if job.finetune.channels_last else torch.contiguous_format
        frozen = teacher.to(device, memory_format=memory)  # in the student's layout: oneDNN runs both alike
        made.append(Distillation(criterion, frozen, model, job.config.loss, job.per_scale))
        return made[-1]

    try:
        history = train(
            job.finetune,
            job.patches,
            job.out,
            val=job.val,
            resume=resume,
            progress=job.progress,
            on_epoch_end=job.on_epoch_end,
            start=student.state_dict() if student is not None else None,
            objective=objective,
        )
    finally:
        for distillation in made:
            distillation.close()
    final = model_from_checkpoint(load_checkpoint(job.out / "model.pt"))
    if not history:
        return final
    device = resolve_device(job.finetune.device)
    judge, last = job.judge, history[-1]
    start = model_from_checkpoint(load_checkpoint(job.out / START))
    step = CompressionStep(
        name="distilled",
        val_psnr=last.val_psnr,
        val_psnr_per_scale=last.val_psnr_per_scale or {},
        teacher_mse=judge.mse(final, device),
        seconds=sum(epoch.seconds for epoch in history),  # training time, resumed epochs included
    )
    step.kept = step.teacher_mse < judge.mse(start, device)  # type: ignore[operator]
    job.history.append(step)
    _say(job, step)
    if step.kept:
        return final
    save_checkpoint(job.out / "model.pt", model_payload("asym_vdsr", start))
    return start


def _record(job: Job, student: VDSR, finished: bool) -> CompressionRecord:
    return CompressionRecord(
        teacher=job.source,
        teacher_sha256=job.sha256,
        rank=job.config.rank,
        parameters=student.parameter_count(),
        teacher_parameters=job.teacher.parameter_count(),
        steps=job.config.steps,
        loss=job.config.loss.model_dump(),
        scale_weights=None if job.per_scale is None else {str(k): v for k, v in sorted(job.per_scale.items())},
        layers=job.layers,
        history=list(job.history),
        finished=finished,
    )


def _say(job: Job, step: CompressionStep) -> None:
    if not job.progress:
        return
    shown = f"val PSNR {step.val_psnr:.3f} dB, " if step.val_psnr is not None else ""
    kept = "" if step.kept else " (not kept)"
    tqdm.write(
        f"compress {step.name}: {shown}output MSE to the teacher {step.teacher_mse:.3e}, {step.seconds:.1f} s{kept}"
    )
