"""Distillation: the fine-tuning objective of ``asymsr compress`` (step 3).

The loss mixes three mean squared errors with weights from ``compress.loss`` in params:

* ``teacher``: the student's output against the teacher's output on the same input;
* ``label``: the student's output against the HR label, as ``train`` does;
* ``feature``: each block's activation (after its ReLU) against the teacher's, averaged over
  the 19 blocks (FitNets-style hints; the student and teacher have the same widths there).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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


class Distillation(Objective):
    """``teacher * MSE(student, teacher) + label * MSE(student, HR) + feature * mean block MSE``.

    The teacher is frozen and runs without gradients on the student's device.
    """

    def __init__(self, criterion: nn.Module, teacher: VDSR, student: VDSR, weights: DistillLoss) -> None:
        super().__init__(criterion)
        self.teacher = teacher.eval().requires_grad_(False)
        self.weights = weights
        self.student_blocks = _Recorder(block_outputs(student)) if weights.feature > 0 else None
        self.teacher_blocks = _Recorder(block_outputs(self.teacher)) if weights.feature > 0 else None

    def __call__(self, network: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        recorders = [r for r in (self.student_blocks, self.teacher_blocks) if r is not None]
        for recorder in recorders:
            recorder.active = True
        try:
            with torch.no_grad():  # the teacher runs only when a loss term needs it
                target = self.teacher(inputs) if self.weights.teacher > 0 or self.weights.feature > 0 else None
            output = network(inputs).float()
        finally:
            for recorder in recorders:
                recorder.active = False
        mse = nn.functional.mse_loss
        loss = output.new_zeros(())
        if target is not None and self.weights.teacher > 0:
            loss = loss + self.weights.teacher * mse(output, target)
        if self.weights.label > 0:
            loss = loss + self.weights.label * mse(output, labels)
        if self.student_blocks is not None and self.teacher_blocks is not None:
            pairs = zip(self.student_blocks.take(), self.teacher_blocks.take(), strict=True)
            loss = loss + self.weights.feature * torch.stack([mse(s, t) for s, t in pairs]).mean()
        return loss

    def key(self) -> dict[str, Any]:
        return {"kind": "distillation", **self.weights.model_dump(mode="json")}

    def close(self) -> None:
        """Remove the hooks from the student and the teacher."""
        for recorder in (self.student_blocks, self.teacher_blocks):
            if recorder is not None:
                for handle in recorder.handles:
                    handle.remove()
