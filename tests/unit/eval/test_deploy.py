"""The deploy form is chosen by measurement, and every candidate computes the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.cli import main
from asymsr.eval.deploy import FORMATS, candidates, choose_deploy_form
from asymsr.eval.evaluation import evaluate
from asymsr.eval.inference import load_predictor
from asymsr.eval.report import comparison_table
from asymsr.mlops.tracking import deploy_tags, evaluation_metrics
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import build
from asymsr.schema.records import EvaluationSummary
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


def test_evaluation_records_the_deploy_choice_and_its_latency(image_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build("asym_vdsr", **TINY)
    checkpoint = tmp_path / "asym.pt"
    save_checkpoint(checkpoint, model_payload("asym_vdsr", model))
    out = tmp_path / "asym.json"
    evaluate(load_predictor(checkpoint, device="cpu"), [image_folder], [2], out, latency_size=24, progress=False)
    summary = EvaluationSummary.read(out)
    efficiency = summary.efficiency
    deploy = efficiency.deploy
    chosen = f"{deploy.form}/{deploy.memory_format}"
    assert {f"{form}/{fmt}" for form in candidates(model) for fmt in FORMATS} <= set(deploy.timings_ms)
    assert deploy.device == "cpu" and deploy.size == 24 and deploy.repeats >= 1
    assert efficiency.latency_ms == deploy.timings_ms[chosen] == min(deploy.timings_ms.values())
    assert efficiency.latency_ms_as_trained_min <= efficiency.latency_ms_as_trained
    assert efficiency.latency_input == [1, 1, 24, 24]
    assert f"fastest deploy form, {chosen}" in (tmp_path / "asym.md").read_text()
    cell = f"{efficiency.latency_ms:.1f} (cpu, {efficiency.threads} threads, {chosen})"
    assert cell in comparison_table({"asym": summary})

    metrics = evaluation_metrics(summary)
    for name, ms in deploy.timings_ms.items():
        assert metrics[f"deploy_latency_ms_{name.replace('/', '_')}"] == ms
    assert metrics["latency_ms_cpu"] == efficiency.latency_ms
    assert metrics["latency_ms_as_trained_cpu"] == efficiency.latency_ms_as_trained
    assert deploy_tags(summary) == {
        "deploy_form": deploy.form,
        "deploy_memory_format": deploy.memory_format,
        "deploy_device": "cpu",
    }


def test_summaries_without_a_deploy_record_are_still_accepted() -> None:
    scores = {"tiny": {"x2": {"psnr": 30.0, "ssim": 0.9}}}
    efficiency = {"arch": "vdsr", "params": 10, "latency_ms": 5.0, "device": "cpu", "threads": 2}
    older = EvaluationSummary.model_validate({"model": "vdsr", "scores": scores, "efficiency": efficiency})
    assert deploy_tags(older) == {}
    metrics = evaluation_metrics(older)
    assert metrics["latency_ms_cpu"] == 5.0 and not any(key.startswith("deploy_") for key in metrics)
    assert "| vdsr | 10 | - | 5.0 (cpu, 2 threads) |" in comparison_table({"vdsr": older})
