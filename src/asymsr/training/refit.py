"""Data-aware refit of a closed-form Asym_VDSR (step 2 of ``asymsr compress``).

The truncated SVD of :mod:`asymsr.nn.factorize` is optimal for the kernel, not for the data:
it weighs every input direction equally, and each layer sees the errors of the approximated
layers before it. Following the "asymmetric reconstruction" of Zhang, Zou, He and Sun (TPAMI
2016), the refit walks the middle layers in order and, for each, solves the pair so that, fed
the *student's* activations, it reproduces the *teacher's* pre-activation output on the
teacher's activations:

    min  sum over pixels || (W2 * W1) * x_s - W_t * x_t ||^2  + ridge

With ``sweeps`` 0 the 3x1 factor W1 is kept from the closed form and the 1x3 factor W2 is the
least-squares solution: F_s, the 1x3 neighbourhood of the student's 3x1 output, has 3 r values
per pixel, so the normal equations are (3 r) x (3 r), accumulated in float64.

Each sweep then alternates (Tai et al., ICLR 2016, and Zhang et al. solve the same kind of
bilinear problem by alternation): W1 given W2, then W2 given W1. Both are least squares in
the second moments of the 3x3 neighbourhoods of x_s (S, 9 C_in square) and their cross moments
with the target (T), gathered once per layer, so a sweep never touches the pixels again. The
W1 system (r 3 C_in unknowns, 12,288 for r = 64) is a sum of nine Kronecker products and is
solved by conjugate gradients from the current W1; the loss never goes up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from asymsr.nn.factorize import convs
from asymsr.nn.models import VDSR, pair_kernel

RIDGE = 1e-6  # relative Tikhonov term: keeps the solve well-posed when a channel is dead
CHUNK = 32  # patches per float64 accumulation (about 100 MB of 1x3 windows, 250 MB of 3x3 ones, at 64 channels)
CG_ITERATIONS = 100  # per W1 solve; warm-started, so each sweep only has to improve on the last


def _neighbourhoods(z: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N * H * W, C * kh * kw): each pixel's window, in a conv weight's (c, y, x) order."""
    padding = (kernel[0] // 2, kernel[1] // 2)
    windows = nn.functional.unfold(z, kernel_size=kernel, padding=padding)  # (N, C * kh * kw, H * W)
    return windows.transpose(1, 2).reshape(-1, windows.shape[1])


def _moments(x: torch.Tensor, target: torch.Tensor, kernel: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (F^T F, F^T Y) of the ``kernel`` windows F of ``x`` and the pixels Y of ``target``."""
    gram = cross = None
    for start in range(0, x.shape[0], CHUNK):
        features = _neighbourhoods(x[start : start + CHUNK], kernel).double()
        wanted = target[start : start + CHUNK].permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
        gram = features.T @ features if gram is None else gram + features.T @ features
        cross = features.T @ wanted if cross is None else cross + features.T @ wanted
    assert gram is not None and cross is not None
    return gram, cross


def _ridge(trace: float, size: int) -> float:
    return max(RIDGE * trace / size, 1e-12)  # the floor: a layer whose inputs are all zero


def _solve_w2(gram: torch.Tensor, cross: torch.Tensor, rank: int) -> torch.Tensor:
    """The 1x3 weights (C_out, r, 1, 3) from the normal equations of the 1x3 windows of the 3x1 output."""
    size = gram.shape[0]
    ridge = _ridge(float(torch.trace(gram)), size)
    solution = torch.linalg.solve(gram + ridge * torch.eye(size, dtype=gram.dtype), cross)  # (3 r, C_out)
    return solution.T.reshape(cross.shape[1], rank, 1, 3).float()


def _w2_given_w1(w1: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """W2 given W1, from the 3x3 moments: the 1x3 windows of W1's output are P u for each 3x3 window u."""
    gram, cross = moments
    b = w1.double()[..., 0]  # (r, C_in, 3): b[m, i, y]
    project = torch.einsum("miy,xz->mxiyz", b, torch.eye(3, dtype=b.dtype)).reshape(3 * b.shape[0], -1)
    return _solve_w2(project @ gram @ project.T, project @ cross, b.shape[0])


def _w1_given_w2(w2: torch.Tensor, w1: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """W1 given W2: least squares in W1 by conjugate gradients on its normal equations, from ``w1``.

    With ``W[o, (i, y, x)] = sum_m a[o, m, x] b[m, i, y]``, the loss is ``tr(W S W^T) - 2 tr(W T)``;
    its normal operator maps b to ``sum_{o, x} a[o, m, x] (W(b) S)[o, (i, y, x)]``.
    """
    gram, cross = moments  # (9 C_in, 9 C_in), (9 C_in, C_out)
    a = w2.double()[:, :, 0, :]  # (C_out, r, 3): a[o, m, x]
    rank, channels = w1.shape[0], w1.shape[1]

    def kernel(b: torch.Tensor) -> torch.Tensor:  # (r, C_in, 3) -> W as (C_out, 9 C_in)
        return pair_kernel(b[..., None], a[:, :, None, :]).reshape(a.shape[0], -1)

    def adjoint(g: torch.Tensor) -> torch.Tensor:  # (C_out, 9 C_in) -> (r, C_in, 3)
        return torch.einsum("omx,oiyx->miy", a, g.reshape(a.shape[0], channels, 3, 3))

    # The ridge's scale: the x = x' terms of the normal operator's trace (the same order as the
    # whole trace, within a factor of 3). This is what the transfer profile's figures were measured with.
    diagonal = torch.diagonal(gram).reshape(channels, 3, 3).sum(dim=(0, 1))  # per x: sum of S's diagonal
    ridge = _ridge(float(torch.einsum("omx,x->", a.square(), diagonal)), rank * channels * 3)

    def normal(b: torch.Tensor) -> torch.Tensor:
        return adjoint(kernel(b) @ gram) + ridge * b

    return _conjugate_gradients(normal, adjoint(cross.T), w1.double()[..., 0])[..., None].float()


def _conjugate_gradients(
    normal: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, start: torch.Tensor
) -> torch.Tensor:
    """``normal(b) = rhs`` for a symmetric positive-definite ``normal``, by at most ``CG_ITERATIONS``
    conjugate-gradient steps from ``start``."""
    b = start
    residual = rhs - normal(b)
    direction, norm = residual.clone(), float(residual.square().sum())
    tolerance = 1e-20 * max(float(rhs.square().sum()), 1e-300)
    for _ in range(CG_ITERATIONS):
        if norm <= tolerance:
            break
        product = normal(direction)
        curvature = float((direction * product).sum())
        if curvature <= 0:  # only when the direction underflowed to nothing: b is as good as it gets
            break
        step = norm / curvature
        b = b + step * direction
        residual = residual - step * product
        norm, previous = float(residual.square().sum()), norm
        direction = residual + (norm / previous) * direction
    return b


def _fit_pair(first: nn.Conv2d, second: nn.Conv2d, x: torch.Tensor, wanted: torch.Tensor, sweeps: int) -> None:
    """Refit one pair in place: W2 alone (``sweeps`` 0) or W1 and W2 in turn."""
    rank = first.weight.shape[0]
    if sweeps == 0:
        z = first(x)
        second.weight.copy_(_solve_w2(*_moments(z, wanted, (1, 3)), rank))
        return
    moments = _moments(x, wanted, (3, 3))
    second.weight.copy_(_w2_given_w1(first.weight, moments))
    for _ in range(sweeps):
        first.weight.copy_(_w1_given_w2(second.weight, first.weight, moments))
        second.weight.copy_(_w2_given_w1(first.weight, moments))
    _balance(first.weight, second.weight)


def _balance(w1: torch.Tensor, w2: torch.Tensor) -> None:
    """Give each middle channel's two factors the same norm, as the closed form does (the pair's
    product is unchanged; fine-tuning with one learning rate stays balanced)."""
    norms_1 = w1.flatten(1).norm(dim=1)  # (r,)
    norms_2 = w2.transpose(0, 1).flatten(1).norm(dim=1)  # (r,)
    scale = torch.where((norms_1 > 0) & (norms_2 > 0), (norms_2 / norms_1.clamp_min(1e-30)).sqrt(), 1.0)
    w1.mul_(scale[:, None, None, None])
    w2.div_(scale[None, :, None, None])


@torch.no_grad()
def refit(student: VDSR, teacher: VDSR, inputs: torch.Tensor, sweeps: int = 0) -> VDSR:
    """A copy of ``student`` refitted on ``inputs`` (N, 1, P, P), on the CPU: the 1x3 factors
    only (``sweeps`` 0), or both factors by ``sweeps`` rounds of alternating least squares."""
    refitted = VDSR(**student.config())
    refitted.load_state_dict(student.state_dict())
    refitted.eval()
    teacher_convs, student_convs = convs(teacher.cpu()), convs(refitted)
    relu = nn.functional.relu
    x_teacher = x_student = relu(teacher_convs[0](inputs))  # the first layer is copied, so both agree
    for index, layer in enumerate(teacher_convs[1:-1], start=1):
        first, second = student_convs[2 * index - 1], student_convs[2 * index]
        wanted = layer(x_teacher)
        _fit_pair(first, second, x_student, wanted, sweeps)
        x_teacher, x_student = relu(wanted), relu(second(first(x_student)))
    return refitted
