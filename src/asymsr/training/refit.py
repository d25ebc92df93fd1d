"""Data-aware refit of a closed-form Asym_VDSR (step 2 of ``asymsr compress``).

The truncated SVD of :mod:`asymsr.nn.factorize` is optimal for the kernel, not for the data:
it weighs every input direction equally, and each layer sees the errors of the approximated
layers before it. Following the "asymmetric reconstruction" of Zhang, Zou, He and Sun (TPAMI
2016), the refit walks the middle layers in order and, for each, keeps the 3x1 factor and
solves for the 1x3 factor by least squares so that the pair, fed the *student's* activations,
reproduces the *teacher's* pre-activation output on the teacher's activations:

    min_W2  sum over pixels || W2 * F_s - W_t x_t ||^2  + ridge * tr(G) / n * ||W2||^2

where F_s is the 1x3 neighbourhood of the student's 3x1 output (3 r values per pixel) and
``G = F_s^T F_s``. The normal equations are (3 r) x (3 r), accumulated in float64 over the
sample, so the cost is a few forward passes over ``refit_patches`` patches.
"""

from __future__ import annotations

import torch
from torch import nn

from asymsr.nn.factorize import convs
from asymsr.nn.models import VDSR

RIDGE = 1e-6  # relative Tikhonov term: keeps the solve well-posed when a channel is dead
CHUNK = 32  # patches per float64 accumulation (bounds memory at about 100 MB for r = 64)


def _neighbourhoods(z: torch.Tensor) -> torch.Tensor:
    """(N, r, H, W) -> (N * H * W, 3 r): each pixel's 1x3 window, ordered as W2.reshape(C_out, -1)."""
    windows = nn.functional.unfold(z, kernel_size=(1, 3), padding=(0, 1))  # (N, r * 3, H * W)
    return windows.transpose(1, 2).reshape(-1, windows.shape[1])


def _solve(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares 1x3 weights (C_out, r, 1, 3) mapping ``z`` (N, r, H, W) to ``target`` (N, C_out, H, W)."""
    size = z.shape[1] * 3
    gram = torch.zeros(size, size, dtype=torch.float64)
    cross = torch.zeros(size, target.shape[1], dtype=torch.float64)
    for start in range(0, z.shape[0], CHUNK):
        features = _neighbourhoods(z[start : start + CHUNK]).double()
        wanted = target[start : start + CHUNK].permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
        gram += features.T @ features
        cross += features.T @ wanted
    ridge = max(RIDGE * float(torch.trace(gram)) / size, 1e-12)  # the floor: a layer whose inputs are all zero
    solution = torch.linalg.solve(gram + ridge * torch.eye(size, dtype=torch.float64), cross)  # (3 r, C_out)
    return solution.T.reshape(target.shape[1], z.shape[1], 1, 3).float()


@torch.no_grad()
def refit(student: VDSR, teacher: VDSR, inputs: torch.Tensor) -> VDSR:
    """A copy of ``student`` whose 1x3 factors are refitted on ``inputs`` (N, 1, P, P), on the CPU."""
    refitted = VDSR(**student.config())
    refitted.load_state_dict(student.state_dict())
    refitted.eval()
    teacher_convs, student_convs = convs(teacher.cpu()), convs(refitted)
    relu = nn.functional.relu
    x_teacher = x_student = relu(teacher_convs[0](inputs))  # the first layer is copied, so both agree
    for index, layer in enumerate(teacher_convs[1:-1], start=1):
        first, second = student_convs[2 * index - 1], student_convs[2 * index]
        wanted = layer(x_teacher)
        z = first(x_student)
        second.weight.copy_(_solve(z, wanted))
        x_teacher, x_student = relu(wanted), relu(second(z))
    return refitted
