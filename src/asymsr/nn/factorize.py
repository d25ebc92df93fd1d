"""The closed-form nearest Asym_VDSR of a trained VDSR (step 1 of ``asymsr compress``).

An Asym_VDSR pair (a 3x1 kernel W1 of shape (r, C_in, 3, 1), then a 1x3 kernel W2 of shape
(C_out, r, 1, 3), nothing non-linear between them) computes the 3x3 kernel
``W[o, i, y, x] = sum_m W2[o, m, x] * W1[m, i, y]``. Laid out as the matrix
``M[(o, x), (i, y)] = W[o, i, y, x]`` of shape (3 C_out, 3 C_in), that is the product of a
(3 C_out, r) and an (r, 3 C_in) matrix: a pair is exactly a 3x3 kernel whose matrix has rank
at most r. The truncated SVD of M is therefore the pair nearest to a given 3x3 layer in the
Frobenius norm (Eckart-Young; the vertical/horizontal decomposition of Tai et al., ICLR 2016),
and its squared error is the sum of the discarded squared singular values.

The factors are split evenly (``U sqrt(S)`` and ``sqrt(S) V^T``), so both have the same scale,
which keeps fine-tuning with one learning rate balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asymsr.nn.models import VDSR, build


@dataclass(frozen=True)
class LayerFit:
    """How well one middle layer's rank-r pair fits its 3x3 kernel."""

    layer: int  # 1-based index among the network's 20 layers (1..18 are the middle ones)
    energy_kept: float  # sum of the kept squared singular values over the total, in [0, 1]
    relative_error: float  # ||M - M_r||_F / ||M||_F


def kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) kernel -> its (3 C_out, 3 C_in) matrix ``M[(o, x), (i, y)]``."""
    out_channels, in_channels, kh, kw = weight.shape
    return weight.permute(0, 3, 1, 2).reshape(out_channels * kw, in_channels * kh)


def factorize(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rank-``rank`` pair nearest to a 3x3 kernel: (3x1 weight, 1x3 weight, singular values).

    ``weight``: (C_out, C_in, 3, 3). Returns W1 (rank, C_in, 3, 1), W2 (C_out, rank, 1, 3) in
    ``weight``'s dtype, and all singular values of its matrix (float64, descending).
    """
    out_channels, in_channels, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"expected a 3x3 kernel, got {kh}x{kw}")
    if not 1 <= rank <= min(3 * out_channels, 3 * in_channels):
        raise ValueError(f"rank must be between 1 and {min(3 * out_channels, 3 * in_channels)}, got {rank}")
    u, s, vh = torch.linalg.svd(kernel_matrix(weight.detach().double()), full_matrices=False)
    root = s[:rank].sqrt()
    left = u[:, :rank] * root  # (C_out * 3, r): rows (o, x)
    right = root[:, None] * vh[:rank]  # (r, C_in * 3): columns (i, y)
    w2 = left.reshape(out_channels, kw, rank).permute(0, 2, 1).unsqueeze(2)
    w1 = right.reshape(rank, in_channels, kh).unsqueeze(3)
    return w1.to(weight.dtype).contiguous(), w2.to(weight.dtype).contiguous(), s


def fit_of(layer: int, singular_values: torch.Tensor, rank: int) -> LayerFit:
    """The :class:`LayerFit` of keeping the first ``rank`` of ``singular_values``."""
    energy = singular_values.square()
    total = float(energy.sum())
    kept = float(energy[:rank].sum())
    return LayerFit(
        layer=layer,
        energy_kept=kept / total if total > 0 else 1.0,
        relative_error=((total - kept) / total) ** 0.5 if total > 0 else 0.0,
    )


def convs(model: VDSR) -> list[nn.Conv2d]:
    """The convolutions of ``model`` in forward order."""
    return [module for module in model.body if isinstance(module, nn.Conv2d)]


@torch.no_grad()
def closed_form(teacher: VDSR, rank: int = 64) -> tuple[VDSR, list[LayerFit]]:
    """The Asym_VDSR of rank ``rank`` nearest to ``teacher``, layer by layer, and each layer's fit.

    The first and last layers are copied; each middle 3x3 becomes its truncated-SVD pair. A
    teacher that is itself a fused Asym_VDSR of rank <= ``rank`` is recovered exactly (up to
    float rounding). The student is in eval mode on the teacher's device.

    Raises:
        ValueError: ``teacher`` is not a VDSR (3x3 middle layers), or ``rank`` is out of range.
    """
    if teacher.block != "full":
        raise ValueError(f"the teacher must be a VDSR (3x3 middle layers), got block type {teacher.block!r}")
    student = build("asym_vdsr", depth=teacher.depth, channels=teacher.channels, rank=rank)
    student = student.to(next(teacher.parameters()).device)
    source, target = convs(teacher), convs(student)
    target[0].weight.copy_(source[0].weight)
    target[-1].weight.copy_(source[-1].weight)
    fits = []
    for index, layer in enumerate(source[1:-1], start=1):
        w1, w2, singular_values = factorize(layer.weight, rank)
        target[2 * index - 1].weight.copy_(w1)
        target[2 * index].weight.copy_(w2)
        fits.append(fit_of(index, singular_values, rank))
    return student.eval(), fits
