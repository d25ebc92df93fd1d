import pytest
import torch

from asymsr.models import VDSR, architecture_names, build, count_parameters, fuse


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
