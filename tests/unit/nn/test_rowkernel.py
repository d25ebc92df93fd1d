"""The native row kernels compute the same convolutions as PyTorch, and refuse what they cannot do."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asymsr.eval.deploy import candidate_names, choose_deploy_form
from asymsr.eval.efficiency import macs_per_pixel
from asymsr.eval.evaluation import evaluate
from asymsr.eval.inference import load_predictor
from asymsr.nn import native, rowkernel
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import VDSR, build, count_parameters

needs_native = pytest.mark.skipif(
    native.unavailable_reason() is not None, reason=f"native kernels unavailable: {native.unavailable_reason()}"
)


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
def test_pair_and_3x3_match_a_float64_reference(threads: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 32, 13, 17)  # odd sizes: pixel-block tails and image borders
    w3x1, w1x3, w3x3 = torch.randn(48, 32, 3, 1), torch.randn(16, 48, 1, 3), torch.randn(32, 32, 3, 3)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pair = rowkernel.asym_pair(x, rowkernel.pack_3x1(w3x1), rowkernel.pack_1x3(w1x3))
        full = rowkernel.conv3x3(x, rowkernel.pack_3x3(w3x3), relu=False)
    finally:
        torch.set_num_threads(previous)
    middle = F.conv2d(x.double(), w3x1.double(), padding=(1, 0))
    reference_pair = F.relu(F.conv2d(middle, w1x3.double(), padding=(0, 1)))
    reference_full = F.conv2d(x.double(), w3x3.double(), padding=1)
    assert pair.shape == (2, 16, 13, 17) and pair.is_contiguous(memory_format=torch.channels_last)
    assert (pair.double() - reference_pair).abs().max() <= 1e-5 * reference_pair.abs().max()
    assert (full.double() - reference_full).abs().max() <= 1e-5 * reference_full.abs().max()
    assert (full < 0).any()  # relu=False really leaves negatives


@needs_native
@pytest.mark.parametrize("arch", ["vdsr", "asym_vdsr"])
def test_row_kernel_network_computes_what_the_model_computes(arch: str) -> None:
    torch.manual_seed(1)
    model = build(arch, depth=6, channels=16).eval()
    fast = rowkernel.RowKernelVDSR(model)
    sample = torch.rand(1, 1, 21, 30)
    with torch.inference_mode():
        assert torch.allclose(fast(sample), model(sample), atol=1e-4)
        assert torch.allclose(fast(sample.repeat(2, 1, 1, 1))[1:], model(sample), atol=1e-4)


@needs_native
def test_deploy_choice_times_the_row_kernel_and_it_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(2)
    model = build("asym_vdsr", depth=5, channels=16).eval()
    names = candidate_names(model, torch.device("cpu"))
    assert "row_kernel/channels_last" in names and len(names) == 5
    chosen, record = choose_deploy_form(model, torch.device("cpu"), size=20, repeats=2)
    assert set(record.timings_ms) == set(names)
    sample = torch.rand(1, 1, 20, 20).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(chosen(sample), model(sample), atol=1e-4)
    monkeypatch.setenv(native.DISABLE_ENV, "1")
    assert "row_kernel/channels_last" not in candidate_names(model, torch.device("cpu"))


@needs_native
def test_bad_inputs_are_refused_with_the_reason() -> None:
    packed = rowkernel.pack_3x1(torch.randn(16, 16, 3, 1))
    with pytest.raises(ValueError, match="float32 CPU tensor"):
        rowkernel.asym_pair(torch.rand(1, 16, 4, 4, dtype=torch.float64), packed, packed)
    with pytest.raises(ValueError, match=r"\(N, 16, H, W\)"):
        rowkernel.asym_pair(torch.rand(1, 8, 4, 4), packed, packed)
    with pytest.raises(ValueError, match="C_out a multiple of 16"):
        rowkernel.conv3x3(torch.rand(1, 16, 4, 4), rowkernel.pack_3x3(torch.randn(8, 16, 3, 3)), relu=True)
    x = torch.rand(1, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="separate channels_last"):
        rowkernel.asym_pair(x, packed, packed, out=x)
    assert "not a multiple of 16" in str(rowkernel.supports(build("vdsr", depth=4, channels=8)))
    with pytest.raises(rowkernel.KernelUnavailable, match="not a multiple of 16"):
        rowkernel.RowKernelVDSR(build("vdsr", depth=4, channels=8))


@needs_native
def test_builds_are_cached_by_source_and_a_failing_compiler_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "kernels"
    sources.mkdir()
    shutil.copy(native.SOURCES / "fma_peak.c", sources / "probe.c")
    monkeypatch.setattr(native, "SOURCES", sources)
    monkeypatch.setenv("ASYMSR_CACHE", str(tmp_path / "cache"))
    first = native.build("probe")
    assert first.parent == tmp_path / "cache" / "kernels" and first.stat().st_size > 0
    mtime = first.stat().st_mtime_ns
    assert native.build("probe") == first and first.stat().st_mtime_ns == mtime  # cached, not rebuilt
    (sources / "probe.c").write_text((sources / "probe.c").read_text() + "\n/* edited */\n")
    assert native.build("probe") != first  # an edited source gets a new library
    (sources / "probe.c").write_text("this is not C")
    with pytest.raises(native.NativeUnavailable, match="compiling .*probe.c"):
        native.build("probe")
    assert not list((tmp_path / "cache" / "kernels").glob("*.tmp"))  # no half-written library left
    monkeypatch.setenv(native.DISABLE_ENV, "1")
    with pytest.raises(native.NativeUnavailable, match="disabled by ASYMSR_NO_NATIVE"):
        native.build("rowconv")


@needs_native
def test_prebuilt_kernels_serve_a_machine_without_a_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's runtime stage has no compiler: the builder's prebuilt libraries are used instead."""
    monkeypatch.setenv(native.PREBUILT_ENV, str(tmp_path / "prebuilt"))
    monkeypatch.setenv("ASYMSR_CACHE", str(tmp_path / "cache"))
    built = native.prebuild()
    assert sorted(path.name.split("-")[0] for path in built) == ["fma_peak", "rowconv"]
    monkeypatch.setenv("CC", "no-such-compiler")
    assert native.compiler() is None and native.unavailable_reason("rowconv") is None
    assert native.build("rowconv") in built and not (tmp_path / "cache").exists()  # nothing compiled
    assert ctypes.CDLL(str(native.build("rowconv")))  # a loadable library
    for library in built:
        library.unlink()
    assert "no C compiler found and no prebuilt rowconv" in native.unavailable_reason("rowconv")
    with pytest.raises(native.NativeUnavailable, match="no prebuilt rowconv"):
        native.build("rowconv")


def test_auto_deploy_keeps_the_stored_network_for_cost_figures(image_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build("asym_vdsr", depth=5, channels=16)
    checkpoint = tmp_path / "asym.pt"
    save_checkpoint(checkpoint, model_payload("asym_vdsr", model))
    predictor = load_predictor(checkpoint, device="cpu", deploy="auto")
    assert predictor.deploy is not None and isinstance(predictor.stored, VDSR)
    summary = evaluate(predictor, [image_folder], [2], tmp_path / "asym.json", latency_size=None, progress=False)
    assert summary.efficiency.params == count_parameters(model)
    assert summary.efficiency.macs_per_pixel == macs_per_pixel(model)


@needs_native
def test_a_kernel_that_cannot_be_built_leaves_the_pytorch_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "kernels"
    sources.mkdir()
    (sources / "rowconv.c").write_text("#error this kernel does not build\n")
    monkeypatch.setattr(native, "SOURCES", sources)
    monkeypatch.setenv("ASYMSR_CACHE", str(tmp_path / "cache"))
    native.load.cache_clear()
    rowkernel.library.cache_clear()
    try:
        with pytest.raises(native.NativeUnavailable, match="does not build"):
            native.build("rowconv")
        with pytest.raises(native.NativeUnavailable, match="source .*absent.c is missing"):
            native.build("absent")
        model = build("asym_vdsr", depth=4, channels=16).eval()
        chosen, record = choose_deploy_form(model, torch.device("cpu"), size=12, repeats=1)
        assert set(record.timings_ms) == {
            "as_trained/nchw",
            "as_trained/channels_last",
            "fused/nchw",
            "fused/channels_last",
        }
    finally:
        native.load.cache_clear()
        rowkernel.library.cache_clear()
