"""The report's figures (PSNR vs cost, visual comparison), published figures and ``report --plots-dir``."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asymsr.cli import main
from asymsr.eval.inference import load_predictor
from asymsr.eval.plots import high_error_window, psnr_cost_plot, visual_comparison
from asymsr.eval.report import comparison_report, headline, published_table
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import build
from asymsr.schema.records import EvaluationSummary
from asymsr.sr.protocol import make_test_pair


def summary(cases: dict[str, dict[str, float]], **efficiency) -> EvaluationSummary:
    """An `asymsr evaluate` summary with the given PSNR per dataset and scale key."""
    scores = {
        dataset: {scale: {"psnr": value, "ssim": 0.9} for scale, value in by_scale.items()}
        for dataset, by_scale in cases.items()
    }
    return EvaluationSummary.model_validate({"model": efficiency["arch"], "scores": scores, "efficiency": efficiency})


def three_models(cases: dict[str, list[str]]) -> dict[str, EvaluationSummary]:
    def scores(offset: float) -> dict[str, dict[str, float]]:
        return {dataset: {scale: 30.0 + offset for scale in scales} for dataset, scales in cases.items()}

    timing = {"device": "cpu", "threads": 2}
    return {
        "bicubic": summary(scores(0.0), arch="bicubic", params=0),
        "vdsr": summary(scores(3.0), arch="vdsr", params=664_704, latency_ms=40.0, **timing),
        "asym": summary(scores(2.5), arch="asym_vdsr", params=443_520, latency_ms=35.0, **timing),
    }


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def test_psnr_cost_plots_grow_with_the_cases(tmp_path):
    one = png_size(psnr_cost_plot(three_models({"Set5": ["x2"]}), "params", tmp_path / "one.png"))
    three = png_size(psnr_cost_plot(three_models({"Set5": ["x2", "x3", "x4"]}), "params", tmp_path / "three.png"))
    six = three_models({"Set5": ["x2", "x3", "x4"], "Set14": ["x2", "x3", "x4"]})
    two_rows = png_size(psnr_cost_plot(six, "latency_ms", tmp_path / "six.png"))
    assert three[0] > one[0] and three[1] == one[1]
    assert two_rows[0] == three[0] and two_rows[1] > three[1]
    assert not list(tmp_path.glob(".*.tmp"))


def test_psnr_cost_plot_needs_the_cost(tmp_path):
    models = three_models({"Set5": ["x2"]})
    only_bicubic = {"bicubic": models["bicubic"]}
    with pytest.raises(ValueError, match="latency_ms"):
        psnr_cost_plot(only_bicubic, "latency_ms", tmp_path / "x.png")
    with pytest.raises(ValueError, match="cost must be one of"):
        psnr_cost_plot(models, "flops", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_high_error_window_finds_the_textured_square():
    image = np.full((64, 80), 128, np.uint8)
    rng = np.random.default_rng(0)
    image[36:52, 48:64] = rng.integers(0, 256, (16, 16))
    pair = make_test_pair(image, 2)
    error = np.abs(pair.network_input * 255.0 - pair.hr_y)
    top, left = high_error_window(error, 12, border=2)
    assert 36 - 12 < top < 52 and 48 - 12 < left < 64
    assert high_error_window(np.zeros((10, 10)), 4, border=1) == (1, 1)  # ties: first window
    with pytest.raises(ValueError, match="does not fit"):
        high_error_window(error, 62, border=2)


def test_visual_comparison_has_one_row_per_image(image_folder, tmp_path):
    paths = sorted(image_folder.glob("*.png"))
    bicubic = {"bicubic": load_predictor("bicubic", device="cpu")}
    one = png_size(visual_comparison(paths[:1], bicubic, 3, tmp_path / "one.png", crop=24))
    two = png_size(visual_comparison(paths[:2], bicubic, 3, tmp_path / "two.png", crop=24))
    wider = png_size(visual_comparison(paths[:1], bicubic | {"b": bicubic["bicubic"]}, 3, tmp_path / "w.png", crop=24))
    assert two[0] == one[0] and two[1] > one[1]
    assert wider[0] > one[0]


def test_published_table():
    table = published_table(["Set5", "tiny"])
    assert "| Set5 | x2 | 33.66 / 0.9299 | 37.53 / 0.9587 |" in table
    assert "Set14" not in table
    assert "No published figures for: tiny." in table
    assert published_table(["tiny"]).strip() == "No published figures for: tiny."


def test_comparison_report_links_the_plots():
    models = three_models({"Set5": ["x4"]})
    text = comparison_report(models, {"PSNR vs parameters": "plots/psnr_vs_params.png"})
    assert text.startswith("# Comparison: bicubic vs vdsr vs asym")
    assert "| Set5 | x4 | 30.00 / 0.9000 |" in text and "31.35 / 0.8838" in text
    assert "![PSNR vs parameters](plots/psnr_vs_params.png)" in text


def test_report_cli_writes_plots_and_links(image_folder, tmp_path, capsys):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for label, data in three_models({"tiny": ["x2"]}).items():
        data.write(metrics / f"{label}.json")
    checkpoint = tmp_path / "asym.pt"
    save_checkpoint(checkpoint, model_payload("asym_vdsr", build("asym_vdsr")))
    report, plots = tmp_path / "out" / "report.md", tmp_path / "out" / "plots"
    command = (
        f"report {metrics / 'bicubic.json'} {metrics / 'vdsr.json'} {metrics / 'asym.json'} --out {report}"
        f" --plots-dir {plots} --visual-model bicubic=bicubic --visual-model asym={checkpoint}"
        f" --visual-images {image_folder} --visual-count 2 --visual-scale 2 --visual-crop 24 --device cpu"
    )
    assert main(shlex.split(command)) == 0
    text = report.read_text()
    for name in ("psnr_vs_params.png", "psnr_vs_latency.png", "visual_x2.png"):
        assert f"(plots/{name})" in text
        png_size(plots / name)
    assert "| tiny | x2 |" in text and "No published figures for: tiny." in text
    assert text in capsys.readouterr().out


def test_report_cli_visual_options_need_plots_dir(tmp_path, capsys):
    path = tmp_path / "bicubic.json"
    three_models({"tiny": ["x2"]})["bicubic"].write(path)
    assert main(shlex.split(f"report {path} --visual-model b=bicubic --visual-images {tmp_path}")) == 2
    assert "need --plots-dir" in capsys.readouterr().err


def test_headline_keeps_few_named_figures_per_model():
    models = three_models({"Set5": ["x2", "x4"], "Set14": ["x2"]})
    models["vdsr"].scores["Set14"]["x2"].psnr = 36.0  # the mean is over every set and scale: (33 + 33 + 36) / 3
    figures = headline(models)
    assert figures == {
        "mean_psnr": {"bicubic": 30.0, "vdsr": 34.0, "asym": 32.5},
        "params": {"vdsr": 664_704, "asym": 443_520},  # bicubic has no network
        "latency_ms": {"vdsr": 40.0, "asym": 35.0},
    }
    del models["vdsr"], models["asym"]
    assert headline(models) == {"mean_psnr": {"bicubic": 30.0}}  # no empty columns
