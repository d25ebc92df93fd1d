"""The deploy form is chosen by measurement, and every candidate computes the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.checkpoint import model_payload, save_checkpoint
from asymsr.cli import main
from asymsr.deploy import FORMATS, candidates, choose_deploy_form
from asymsr.inference import load_predictor
from asymsr.models import build
from tests.conftest import TINY, smooth_image


@pytest.mark.parametrize("arch", ["vdsr", "asym_vdsr"])
def test_choice_is_the_fastest_measured_and_computes_the_same(arch: str) -> None:
    torch.manual_seed(0)
    model = build(arch, **TINY).eval()
    chosen, record = choose_deploy_form(model, torch.device("cpu"), size=24, repeats=2)
    expected = {f"{form}/{fmt}" for form in candidates(model) for fmt in FORMATS}
    assert set(record.timings_ms) == expected
    assert len(expected) == (4 if arch == "asym_vdsr" else 2)
    assert record.timings_ms[f"{record.form}/{record.memory_format}"] == min(record.timings_ms.values())
    sample = torch.rand(1, 1, 19, 23)
    with torch.inference_mode():
        reference = model(sample)
        output = chosen(sample.contiguous(memory_format=FORMATS[record.memory_format]))
    assert torch.allclose(output, reference, atol=1e-4)


def test_upscale_with_auto_deploy_matches_the_stored_network(tmp_path: Path) -> None:
    torch.manual_seed(1)
    checkpoint = tmp_path / "asym.pt"
    save_checkpoint(checkpoint, model_payload("asym_vdsr", build("asym_vdsr", **TINY)))
    Image.fromarray(smooth_image(40, 36, seed=5)).save(tmp_path / "in.png")
    outputs = {}
    for deploy in ("auto", "as_trained"):
        out = tmp_path / f"{deploy}.png"
        argv = ["upscale", str(tmp_path / "in.png"), str(out), "--scale", "2", "--model", str(checkpoint)]
        assert main([*argv, "--device", "cpu", "--deploy", deploy]) == 0
        outputs[deploy] = np.asarray(Image.open(out), dtype=np.int16)
    assert np.abs(outputs["auto"] - outputs["as_trained"]).max() <= 1  # float reassociation may flip a rounding
    assert load_predictor(checkpoint, device="cpu", deploy="auto").deploy is not None
    with pytest.raises(ValueError, match="deploy must be one of"):
        load_predictor(checkpoint, device="cpu", deploy="fastest")
