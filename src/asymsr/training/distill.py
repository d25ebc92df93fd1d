"""Distillation: the fine-tuning objective of ``asymsr compress`` (step 3).

The loss mixes three mean squared errors with weights from ``compress.loss`` in params:

* ``teacher``: the student's output against the teacher's output on the same input;
* ``label``: the student's output against the HR label, as ``train`` does;
* ``feature``: each block's activation (after its ReLU) against the teacher's, averaged over
  the 19 blocks (FitNets-style hints; the student and teacher have the same widths there).

With ``teacher_views`` > 1 the teacher's output is its self-ensemble over flipped inputs
(:class:`asymsr.nn.ensemble.FlipEnsemble`), a target above the teacher itself: a student
distilled from the plain teacher can at best match it.

Test PSNR is a log of the error, and the teacher's error at x2 is about 0.28 of its error at
x4 (on the 291 images), so a plain mean over mixed-scale patches spends the fine-tuning on x3
and x4 (measured: 300 steps improved Set5 x4 by 0.05 dB and left x2 where the refit put it). ``scale_balance``
weighs the two output terms of each patch by ``weight[scale]`` (:func:`scale_weights`), which
at 1 makes equal dB losses at every scale cost the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from asymsr.nn.ensemble import with_views
from asymsr.nn.models import VDSR
from asymsr.schema.params import DistillLoss
from asymsr.training.loop import Objective


def block_outputs(model: VDSR) -> list[nn.Module]:
    """The ReLUs that end each block of ``model``, in forward order (19 for depth 20)."""
    return [module for module in model.body if isinstance(module, nn.ReLU)]


class _Recorder:
    """Keeps the outputs of ``modules`` during :meth:`recording` (forward hooks)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.outputs: list[torch.Tensor] = []
        self.active = False  # validation and saving run the same modules: those passes are not kept
        self.handles = [module.register_forward_hook(self._keep) for module in modules]

    def _keep(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if self.active:
            self.outputs.append(output)

    def take(self) -> list[torch.Tensor]:
        taken, self.outputs = self.outputs, []
        return taken


def patch_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each patch's mean squared error, (N, ...) -> (N,)."""
    return (output - target).square().flatten(1).mean(dim=1)


def patch_weights(per_scale: dict[int, float], scales: torch.Tensor) -> torch.Tensor:
    """The weight of each patch, (N,), from its scale (``scales``, int (N,)) and the per-scale weights."""
    table = torch.zeros(max(per_scale) + 1, device=scales.device)
    for scale, weight in per_scale.items():
        table[scale] = weight
    return table[scales]


def scale_weights(errors: dict[int, float], counts: dict[int, int], balance: float) -> dict[int, float]:
    """Per-scale weights ``error ** -balance``, scaled so that their mean over the patches is 1.

    ``errors``: the teacher's MSE to the HR labels at each scale; ``counts``: patches per scale.
    Keeping the mean at 1 keeps the loss, and so the learning rate, on the scale of a plain mean.
    """
    raw = {scale: error**-balance for scale, error in errors.items()}
    mean = sum(raw[scale] * counts[scale] for scale in raw) / sum(counts[scale] for scale in raw)
    return {scale: value / mean for scale, value in raw.items()}


class Distillation(Objective):
    """``teacher * MSE(student, teacher) + label * MSE(student, HR) + feature * mean block MSE``.

    The teacher is frozen and runs without gradients on the student's device. With
    ``per_scale`` (scale -> weight), each patch's output terms are weighted by its scale's weight.
    """

    def __init__(
        self,
        criterion: nn.Module,
        teacher: VDSR,
        student: VDSR,
        weights: DistillLoss,
        per_scale: dict[int, float] | None = None,
    ) -> None:
        super().__init__(criterion)
        self.teacher = teacher.eval().requires_grad_(False)
        self.target = with_views(self.teacher, weights.teacher_views)  # the teacher itself for 1 view
        self.weights = weights
        self.per_scale = per_scale
        self.student_blocks = _Recorder(block_outputs(student)) if weights.feature > 0 else None
        self.teacher_blocks = _Recorder(block_outputs(self.teacher)) if weights.feature > 0 else None

    def __call__(
        self, network: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, scales: torch.Tensor | None = None
    ) -> torch.Tensor:
        recorders = [r for r in (self.student_blocks, self.teacher_blocks) if r is not None]
        for recorder in recorders:
            recorder.active = True
        try:
            with torch.no_grad():  # the teacher runs only when a loss term needs it
                target = self.target(inputs) if self.weights.teacher > 0 or self.weights.feature > 0 else None
            output = network(inputs).float()
        finally:
            for recorder in recorders:
                recorder.active = False
        mse = nn.functional.mse_loss
        weighted = self._patch_mse(scales)
        loss = output.new_zeros(())
        if target is not None and self.weights.teacher > 0:
            loss = loss + self.weights.teacher * weighted(output, target)
        if self.weights.label > 0:
            loss = loss + self.weights.label * weighted(output, labels)
        if self.student_blocks is not None and self.teacher_blocks is not None:
            pairs = zip(self.student_blocks.take(), self.teacher_blocks.take(), strict=True)
            loss = loss + self.weights.feature * torch.stack([mse(s, t) for s, t in pairs]).mean()
        return loss

    def _patch_mse(self, scales: torch.Tensor | None) -> Any:
        """The output MSE: plain, or each patch's weighted by its scale's weight."""
        if self.per_scale is None:
            return nn.functional.mse_loss
        if scales is None:
            raise ValueError("per-scale weights need each patch's scale")
        weights = patch_weights(self.per_scale, scales)

        def weighted(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return (weights * patch_mse(output, target)).mean()

        return weighted

    def key(self) -> dict[str, Any]:
        key = {"kind": "distillation", **self.weights.model_dump(mode="json")}
        if key["teacher_views"] == 1:  # as before the option existed, so older checkpoints still resume
            del key["teacher_views"]
        if self.per_scale is not None:  # derived from data and teacher; a resume must not change them
            key["per_scale"] = {str(scale): round(weight, 9) for scale, weight in sorted(self.per_scale.items())}
        return key

    def close(self) -> None:
        """Remove the hooks from the student and the teacher."""
        for recorder in (self.student_blocks, self.teacher_blocks):
            if recorder is not None:
                for handle in recorder.handles:
                    handle.remove()
