"""Self-ensemble: a network's output averaged over flipped (and transposed) copies of its input.

Super-resolution has no preferred orientation, so a network's errors on a flipped image are
partly independent of its errors on the image itself, and their mean is closer to the truth
(Timofte et al., CVPR 2016, "seven ways"; Lim et al., EDSR, 2017). It costs ``views`` passes, so
this project uses it only as a distillation target (``compress.loss.teacher_views``), never at
inference: a student taught from it runs one pass.
"""

from __future__ import annotations

import torch
from torch import nn

VIEWS = (1, 2, 4, 8)
_FLIPS = ((), (3,), (2,), (2, 3))  # dims of (N, C, H, W): none, horizontal, vertical, both


class FlipEnsemble(nn.Module):
    """The mean of ``model`` over the first ``views`` of: identity, horizontal flip, vertical flip,
    both; then the same four of the transposed input. Each output is mapped back before the mean."""

    def __init__(self, model: nn.Module, views: int) -> None:
        super().__init__()
        if views not in VIEWS:
            raise ValueError(f"views must be one of {VIEWS}, got {views}")
        self.model, self.views = model, views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for view in range(self.views):
            dims, transposed = _FLIPS[view % 4], view >= 4
            y = x.transpose(2, 3) if transposed else x
            y = self.model(y.flip(dims) if dims else y)
            y = y.flip(dims) if dims else y
            total += y.transpose(2, 3) if transposed else y
        return total / self.views


def with_views(model: nn.Module, views: int) -> nn.Module:
    """``model`` itself for one view, else its :class:`FlipEnsemble`."""
    return model if views == 1 else FlipEnsemble(model, views)
