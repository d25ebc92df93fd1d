import math

import numpy as np
import pytest
import torch

from asymsr.nn.models import VDSR, architecture_names, architecture_of, build, count_parameters, fuse
from tests.conftest import TINY


def test_parameter_counts_are_exact():
    assert count_parameters(build("vdsr")) == 664_704
    assert count_parameters(build("asym_vdsr")) == 443_520


def test_architecture_structure():
    vdsr = build("vdsr")
    asym = build("asym_vdsr")
    vdsr_convs = [m for m in vdsr.modules() if isinstance(m, torch.nn.Conv2d)]
    asym_convs = [m for m in asym.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(vdsr_convs) == 20 and all(c.kernel_size == (3, 3) and c.bias is None for c in vdsr_convs)
    assert len(asym_convs) == 2 + 2 * 18
    assert [c.kernel_size for c in asym_convs[1:-1]] == [(3, 1), (1, 3)] * 18
    assert [c.padding for c in asym_convs[1:-1]] == [(1, 0), (0, 1)] * 18
    relus = [m for m in asym.body if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 19  # one after the first conv and one per asymmetric pair


def test_build_rejects_unknown_names_and_applies_overrides():
    with pytest.raises(KeyError, match="known: asym_vdsr, vdsr"):
        build("srcnn")
    assert architecture_names() == ["asym_vdsr", "vdsr"]
    assert build("asym_vdsr", init="he_fan_out").init_scheme == "he_fan_out"
    assert count_parameters(build("vdsr", depth=5, channels=8)) == 9 * 8 + 3 * 9 * 8 * 8 + 9 * 8
    with pytest.raises(ValueError, match="block"):
        VDSR(block="diagonal")


def test_residual_output_shape_and_identity():
    model = build("vdsr")
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()
        x = torch.rand(2, 1, 17, 23)
        assert torch.equal(model(x), x)


def _residual_std(model: VDSR) -> float:
    torch.manual_seed(1)
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        return float((model(x) - x).std())


def test_variance_preserving_init_keeps_asym_activations_at_vdsr_scale():
    torch.manual_seed(0)
    vdsr = _residual_std(build("vdsr"))
    torch.manual_seed(0)
    preserving = _residual_std(build("asym_vdsr"))
    torch.manual_seed(0)
    naive = _residual_std(build("asym_vdsr", init="he_fan_out"))
    assert 0.1 * vdsr < preserving < 10 * vdsr
    assert naive > 100 * preserving  # He on both factors: ~2x variance growth per block over 18 blocks


@pytest.mark.parametrize("size", [(31, 47), (64, 64), (1, 1), (2, 5)])
def test_fused_asym_equals_split_asym(size):
    torch.manual_seed(3)
    asym = build("asym_vdsr").eval()
    fused = fuse(asym)
    assert fused.block == "full" and count_parameters(fused) == 664_704
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        assert torch.allclose(asym(x), fused(x), atol=1e-4, rtol=0)


def test_fuse_of_vdsr_is_an_equal_copy():
    vdsr = build("vdsr").eval()
    copy = fuse(vdsr)
    assert copy is not vdsr
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(vdsr(x), copy(x))


def test_fused_kernels_are_the_outer_products_of_each_pair():
    """A 3x1 (column) then a 1x3 (row) correlation is one 3x3 correlation with kernel column x row,
    summed over the channels between them; first and last layers are copied."""
    torch.manual_seed(4)
    asym = build("asym_vdsr", **TINY)
    fused = fuse(asym)
    source = [m.weight.detach().numpy() for m in asym.body if isinstance(m, torch.nn.Conv2d)]
    target = [m.weight.detach().numpy() for m in fused.body if isinstance(m, torch.nn.Conv2d)]
    assert len(target) == TINY["depth"] and all(w.shape[-2:] == (3, 3) for w in target)
    assert np.array_equal(target[0], source[0]) and np.array_equal(target[-1], source[-1])
    for layer, (column, row) in enumerate(zip(source[1:-1:2], source[2:-1:2], strict=True), start=1):
        channels = column.shape[0]
        for out in range(channels):
            for into in range(channels):
                kernel = sum(np.outer(column[mid, into, :, 0], row[out, mid, 0, :]) for mid in range(channels))
                assert np.allclose(target[layer][out, into], kernel, rtol=0, atol=1e-6), (layer, out, into)


def test_fuse_keeps_dtype_and_device_and_returns_eval_mode():
    """The fused copy is in eval mode, in the source's dtype and on its device (meta stands in for a GPU)."""
    double = fuse(build("asym_vdsr", **TINY).double().train())
    assert not double.training and {p.dtype for p in double.parameters()} == {torch.float64}
    on_meta = fuse(build("asym_vdsr", **TINY).to("meta"))
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    x = torch.rand(1, 1, 9, 11, dtype=torch.float64)
    asym = build("asym_vdsr", **TINY).double().eval()
    with torch.no_grad():
        assert torch.allclose(asym(x), fuse(asym)(x), rtol=0, atol=1e-12)


def test_architecture_of_names_the_registered_block_type():
    assert architecture_of(build("vdsr", **TINY)) == "vdsr"
    assert architecture_of(fuse(build("asym_vdsr", **TINY))) == "vdsr"
    assert architecture_of(build("asym_vdsr", **TINY)) == "asym_vdsr"
    odd = build("vdsr", **TINY)
    odd.block = "diagonal"
    with pytest.raises(KeyError, match="no registered architecture has block type 'diagonal'"):
        architecture_of(odd)


def test_constructor_defaults_and_limits():
    """VDSR() is the paper's network; depth >= 3 and channels >= 1 are the smallest accepted, and errors say why."""
    assert VDSR().config() == {"depth": 20, "channels": 64, "block": "full", "init": "he_fan_out"}
    assert count_parameters(VDSR(depth=3, channels=1)) == 9 + 9 + 9
    for kwargs, message in [
        ({"depth": 2}, "depth must be >= 3, got 2"),
        ({"channels": 0}, "channels must be >= 1, got 0"),
        ({"init": "xavier"}, "init must be 'he_fan_out' or 'variance_preserving', got 'xavier'"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            VDSR(**kwargs)


def test_forward_adds_the_body_to_its_input():
    model = build("vdsr", **TINY).eval()
    x = torch.rand(2, 1, 9, 7)
    with torch.no_grad():
        assert torch.equal(model(x), x + model.body(x))


def test_initial_weights_have_the_documented_spread():
    """He fan-out: std sqrt(2 / (kh kw out)); variance-preserving Asym_VDSR: 3x1 factors sqrt(1 / (3 out)),
    1x3 factors sqrt(2 / (3 out)). Thousands of draws per layer, so 10 % is a wide margin."""
    torch.manual_seed(0)
    vdsr = [m.weight.detach() for m in build("vdsr").body if isinstance(m, torch.nn.Conv2d)]
    assert float(vdsr[0].std()) == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.1)  # fan-in would be 2 / 9
    assert float(vdsr[1].std()) == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.1)
    asym = [m.weight.detach() for m in build("asym_vdsr").body if isinstance(m, torch.nn.Conv2d)]
    for column, row in zip(asym[1:-1:2], asym[2:-1:2], strict=True):
        assert float(column.std()) == pytest.approx(math.sqrt(1 / (3 * 64)), rel=0.1)
        assert float(row.std()) == pytest.approx(math.sqrt(2 / (3 * 64)), rel=0.1)


def test_flip_ensemble_is_the_mean_over_the_views_mapped_back():
    from asymsr.nn.ensemble import FlipEnsemble, with_views

    torch.manual_seed(0)
    model = build("vdsr", depth=3, channels=4).eval()
    x = torch.rand(2, 1, 7, 9)
    flips = [(), (3,), (2,), (2, 3)]

    def view(dims, transposed):
        y = x.transpose(2, 3) if transposed else x
        y = model(y.flip(dims) if dims else y)
        y = y.flip(dims) if dims else y
        return y.transpose(2, 3) if transposed else y

    with torch.no_grad():
        for count in (1, 2, 4, 8):
            expected = sum(view(flips[i % 4], i >= 4) for i in range(count)) / count
            assert torch.allclose(FlipEnsemble(model, count)(x), expected, atol=1e-6), count
        assert torch.allclose(FlipEnsemble(torch.nn.Identity(), 8)(x), x, atol=1e-7)
    assert with_views(model, 1) is model and isinstance(with_views(model, 2), FlipEnsemble)
    with pytest.raises(ValueError, match="views must be one of"):
        FlipEnsemble(model, 3)
