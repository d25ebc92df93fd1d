"""The closed form (truncated SVD of each middle layer) and rank as an architecture knob."""

import pytest
import torch

from asymsr.eval.efficiency import macs_per_pixel
from asymsr.nn import rowkernel
from asymsr.nn.factorize import closed_form, factorize, kernel_matrix
from asymsr.nn.models import build, count_parameters, fuse


def _pair_kernel(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernel that a 3x1 (w1) then 1x3 (w2) computes, by convolving a delta through both."""
    channels = w1.shape[1]
    pair = torch.nn.Sequential(
        torch.nn.Conv2d(channels, w1.shape[0], (3, 1), padding=(1, 0), bias=False),
        torch.nn.Conv2d(w1.shape[0], w2.shape[0], (1, 3), padding=(0, 1), bias=False),
    ).double()
    pair[0].weight.data, pair[1].weight.data = w1.double(), w2.double()
    # the output at the centre (2, 2) of a 5x5 input with a delta at (1 + dy, 1 + dx) is W[:, i, dy, dx]
    # (PyTorch convolutions are cross-correlations, so nothing is flipped)
    kernel = torch.zeros(w2.shape[0], channels, 3, 3, dtype=torch.float64)
    for i in range(channels):
        for dy in range(3):
            for dx in range(3):
                x = torch.zeros(1, channels, 5, 5, dtype=torch.float64)
                x[0, i, 1 + dy, 1 + dx] = 1
                kernel[:, i, dy, dx] = pair(x)[0, :, 2, 2]
    return kernel


def test_a_network_of_rank_r_is_recovered_exactly():
    """A fused Asym_VDSR of rank 16 is a VDSR whose layers have rank <= 16: the closed form gives its function back."""
    torch.manual_seed(0)
    asym = build("asym_vdsr", depth=6, channels=32, rank=16).eval()
    teacher = fuse(asym)
    student, fits = closed_form(teacher, rank=16)
    x = torch.rand(2, 1, 24, 20)
    with torch.no_grad():
        assert torch.allclose(student(x), asym(x), atol=1e-5, rtol=0)
    assert all(fit.energy_kept > 1 - 1e-9 and fit.relative_error < 1e-5 for fit in fits)
    assert [fit.layer for fit in fits] == [1, 2, 3, 4]


@pytest.mark.parametrize("rank", [1, 5, 24])
def test_error_on_a_random_layer_is_the_tail_of_the_singular_values(rank):
    """Eckart-Young: the pair's kernel misses the 3x3 by exactly the discarded singular values."""
    torch.manual_seed(rank)
    weight = torch.randn(8, 8, 3, 3, dtype=torch.float64)
    w1, w2, singular = factorize(weight, rank)
    assert w1.shape == (rank, 8, 3, 1) and w2.shape == (8, rank, 1, 3)
    approximation = _pair_kernel(w1, w2)  # measured through real convolutions, not through the layout
    error = (approximation - weight).square().sum()
    assert torch.allclose(error, singular[rank:].square().sum(), rtol=1e-9, atol=1e-9)
    assert torch.linalg.matrix_rank(kernel_matrix(approximation)) == rank


def test_full_rank_factorisation_is_exact_and_layout_is_the_fuse_layout():
    torch.manual_seed(1)
    weight = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    w1, w2, _ = factorize(weight, 12)
    assert torch.allclose(_pair_kernel(w1, w2), weight, atol=1e-10)
    assert torch.allclose(torch.einsum("omx,miy->oiyx", w2[:, :, 0, :], w1[:, :, :, 0]), weight, atol=1e-10)


def test_factorize_rejects_bad_rank_and_kernels():
    with pytest.raises(ValueError, match="rank must be between 1 and 12"):
        factorize(torch.zeros(4, 4, 3, 3), 13)
    with pytest.raises(ValueError, match="3x3"):
        factorize(torch.zeros(4, 4, 5, 5), 2)
    with pytest.raises(ValueError, match="teacher must be a VDSR"):
        closed_form(build("asym_vdsr", depth=4, channels=8), 4)


@pytest.mark.parametrize("rank", [16, 32, 48, 64])
def test_parameter_and_multiply_add_counts_for_each_rank(rank):
    model = build("asym_vdsr", rank=rank)
    assert count_parameters(model) == model.parameter_count() == 1_152 + 6_912 * rank
    assert macs_per_pixel(model) == 1_152 + 6_912 * rank  # measured by hooks on the real convolutions
    assert ("rank" in model.config()) == (rank != 64)  # full-rank checkpoints keep their old layout


def test_published_counts():
    assert build("vdsr").parameter_count() == count_parameters(build("vdsr")) == 664_704
    assert build("asym_vdsr").parameter_count() == 443_520


def test_rank_out_of_range_is_refused():
    with pytest.raises(ValueError, match="rank must be between 1 and channels=64, got 65"):
        build("asym_vdsr", rank=65)
    with pytest.raises(ValueError, match="got 0"):
        build("asym_vdsr", rank=0)


def test_fuse_of_a_low_rank_model_computes_the_same_function():
    torch.manual_seed(2)
    model = build("asym_vdsr", depth=5, channels=16, rank=8).eval()
    x = torch.rand(1, 1, 17, 23)
    with torch.no_grad():
        assert torch.allclose(fuse(model)(x), model(x), atol=1e-5)


@pytest.mark.parametrize("rank", [16, 48])
def test_row_kernel_runs_every_rank_that_is_a_multiple_of_16(rank):
    if rowkernel.native.unavailable_reason():
        pytest.skip(f"row kernel not built here: {rowkernel.native.unavailable_reason()}")
    torch.manual_seed(3)
    model = build("asym_vdsr", depth=5, channels=64, rank=rank).eval()
    x = torch.rand(1, 1, 19, 27)
    with torch.no_grad():
        assert torch.allclose(rowkernel.RowKernelVDSR(model)(x), model(x), atol=1e-4)


def test_row_kernel_refuses_other_ranks_with_a_reason():
    model = build("asym_vdsr", depth=4, channels=64, rank=24)
    assert rowkernel.supports(model) == "rank 24 is not a multiple of 16"
    with pytest.raises(rowkernel.KernelUnavailable, match="rank 24 is not a multiple of 16"):
        rowkernel.RowKernelVDSR(model)
