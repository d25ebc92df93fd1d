import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asymsr.cli import build_parser, main
from asymsr.nn.models import build

COMMANDS = ["profile", "fetch", "validate", "prepare", "train", "evaluate", "import-weights", "upscale", "report"]


def cli(command: str) -> int:
    """Run ``asymsr COMMAND`` in-process and return its exit status."""
    return main(shlex.split(command))


def test_every_command_has_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: asymsr {command}" in capsys.readouterr().out


def test_installed_entry_point_runs():
    script = Path(sys.executable).with_name("asymsr")  # the console script `pip install` created
    assert script.is_file(), f"{script} missing: install the project with `make install`"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "evaluate" in result.stdout


def test_evaluate_contract_for_bicubic(image_folder, tmp_path):
    out = tmp_path / "m" / "bicubic.json"
    assert cli(f"evaluate --model bicubic --data {image_folder} --scales 2,4 --out {out} --quiet") == 0
    summary = json.loads(out.read_text())
    assert set(summary) == {"schema_version", "model", "source", "scores", "efficiency"}
    scores = summary["scores"]
    assert set(scores) == {"tiny"} and set(scores["tiny"]) == {"x2", "x4"}
    assert 20 < scores["tiny"]["x2"]["psnr"] < 60 and 0 < scores["tiny"]["x4"]["ssim"] <= 1
    assert scores["tiny"]["x2"]["psnr"] > scores["tiny"]["x4"]["psnr"]
    per_image = json.loads((tmp_path / "m" / "bicubic.per_image.json").read_text())["scores"]
    assert sorted(per_image["tiny"]["x2"]) == ["a.png", "b.png", "c.png"]
    mean = np.mean([v["psnr"] for v in per_image["tiny"]["x2"].values()])
    assert mean == pytest.approx(scores["tiny"]["x2"]["psnr"])
    assert "| tiny | x2 |" in (tmp_path / "m" / "bicubic.md").read_text()


def test_train_evaluate_report_chain(image_folder, tmp_path, capsys):
    patches, run = tmp_path / "patches", tmp_path / "run"
    prepare = f"prepare {image_folder} --out {patches} --patch-size 21 --stride 21 --downsize-factors 1.0 --workers 1"
    assert cli(prepare + " --quiet") == 0
    train = (
        f"train --arch asym_vdsr --patches {patches} --out {run} --epochs 1 --steps-per-epoch 2 --batch-size 4"
        " --optimizer adam --lr 1e-4 --device cpu --val-crop none --quiet"
    )
    assert cli(train) == 0
    evaluate = f"evaluate --data {image_folder} --scales 3 --quiet"
    assert cli(f"{evaluate} --model {run / 'model.pt'} --out {tmp_path / 'asym.json'} --latency-size 32") == 0
    efficiency = json.loads((tmp_path / "asym.json").read_text())["efficiency"]
    assert efficiency["params"] == 443_520 and efficiency["macs_per_pixel"] == 443_520
    assert efficiency["device"] == "cpu" and efficiency["latency_ms"] > 0 and efficiency["threads"] >= 1
    assert cli(f"{evaluate} --model bicubic --out {tmp_path / 'bicubic.json'}") == 0
    capsys.readouterr()
    report = f"report {tmp_path / 'bicubic.json'} {tmp_path / 'asym.json'} --labels bicubic,asym"
    assert cli(f"{report} --out {tmp_path / 'report.md'} --plot-out {tmp_path / 'gain.json'}") == 0
    table = (tmp_path / "report.md").read_text()
    assert "| tiny | x3 |" in table and "asym gain (dB)" in table and "| asym | 443,520 | 443,520 |" in table
    rows = json.loads((tmp_path / "gain.json").read_text())
    assert [row["case"] for row in rows] == ["asym tiny x3"]
    bicubic = json.loads((tmp_path / "bicubic.json").read_text())["scores"]["tiny"]["x3"]["psnr"]
    asym = json.loads((tmp_path / "asym.json").read_text())["scores"]["tiny"]["x3"]["psnr"]
    assert rows[0]["psnr_gain_db"] == pytest.approx(asym - bicubic)
    assert f"{asym - bicubic:+.2f} |" in table


def test_user_errors_are_one_line(tmp_path, capsys):
    assert cli(f"evaluate --model {tmp_path / 'nope.pt'} --data {tmp_path} --out {tmp_path / 'm.json'}") == 2
    assert capsys.readouterr().err.strip() == f"asymsr: error: checkpoint not found: {tmp_path / 'nope.pt'}"
    assert cli(f"evaluate --model bicubic --data {tmp_path / 'absent'} --out {tmp_path / 'm.json'}") == 2
    assert "image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
    assert cli(f"train --patches {tmp_path} --out {tmp_path / 'r'} --lr -1") == 2
    assert capsys.readouterr().err.strip() == "asymsr: error: --lr: Input should be greater than 0 (got -1.0)"


def test_import_weights_names_the_bad_array(tmp_path, capsys):
    convs = [m for m in build("vdsr").body if isinstance(m, torch.nn.Conv2d)]
    arrays = {f"conv{i:02d}": np.zeros(tuple(c.weight.shape), np.float32) for i, c in enumerate(convs)}
    arrays["conv07"] = np.zeros((64, 64, 5, 5), np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert cli(f"import-weights {tmp_path / 'bad.npz'} --out {tmp_path / 'w.pt'}") == 2
    error = capsys.readouterr().err
    assert "'conv07' has shape (64, 64, 5, 5)" in error and "needs (64, 64, 3, 3)" in error
    del arrays["conv19"]
    arrays["conv07"] = np.zeros((64, 64, 3, 3), np.float32)
    np.savez(tmp_path / "short.npz", **arrays)
    assert cli(f"import-weights {tmp_path / 'short.npz'} --out {tmp_path / 'w.pt'}") == 2
    assert "missing arrays ['conv19']" in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()


def test_non_finite_weights_are_refused_naming_the_array_or_key(tmp_path, capsys):
    convs = [m for m in build("vdsr").body if isinstance(m, torch.nn.Conv2d)]
    arrays = {f"conv{i:02d}": np.zeros(tuple(c.weight.shape), np.float32) for i, c in enumerate(convs)}
    arrays["conv05"][0, 0, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    assert cli(f"import-weights {tmp_path / 'nan.npz'} --out {tmp_path / 'w.pt'}") == 2
    assert "'conv05' holds NaN or Inf" in capsys.readouterr().err and not (tmp_path / "w.pt").exists()

    from asymsr.nn.checkpoint import model_payload, save_checkpoint

    model = build("vdsr")
    with torch.no_grad():
        model.body[2].weight[0, 0, 0, 0] = float("inf")
    save_checkpoint(tmp_path / "inf.pt", model_payload("vdsr", model))
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((12, 12), 128, np.uint8)).save(tmp_path / "in.png")
    assert cli(f"upscale {tmp_path / 'in.png'} {tmp_path / 'out.png'} --scale 2 --model {tmp_path / 'inf.pt'}") == 2
    error = capsys.readouterr().err
    assert "weight 'body.2.weight' holds NaN or Inf" in error and not (tmp_path / "out.png").exists()


def test_an_overflowing_network_writes_no_image(tmp_path, capsys):
    from asymsr.nn.checkpoint import model_payload, save_checkpoint

    model = build("vdsr", depth=3, channels=4)
    with torch.no_grad():
        for conv in (m for m in model.body if isinstance(m, torch.nn.Conv2d)):
            conv.weight.fill_(3e37)  # finite weights whose products overflow float32
    save_checkpoint(tmp_path / "big.pt", model_payload("vdsr", model))
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((12, 12), 128, np.uint8)).save(tmp_path / "in.png")
    command = f"upscale {tmp_path / 'in.png'} {tmp_path / 'out.png'} --scale 2 --model {tmp_path / 'big.pt'}"
    assert cli(command + " --deploy as_trained") == 2
    assert "output holds NaN or Inf" in capsys.readouterr().err and not (tmp_path / "out.png").exists()


def test_small_refusals_name_the_flag_file_or_key(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal: exit 2 with its usage line
        cli(f"evaluate --model bicubic --data {tmp_path} --scales , --out {tmp_path / 'e.json'}")
    assert exit_info.value.code == 2
    assert "--scales: expected a comma-separated list of values, got ','" in capsys.readouterr().err
    assert cli(f"evaluate --model bicubic --data {tmp_path} --latency-size 0 --out {tmp_path / 'e.json'}") == 2
    assert "--latency-size: Input should be greater than or equal to 8" in capsys.readouterr().err
    from PIL import Image

    (tmp_path / "small").mkdir()
    Image.new("RGB", (9, 9)).save(tmp_path / "small" / "t.png")
    assert cli(f"evaluate --model bicubic --data {tmp_path / 'small'} --out {tmp_path / 'e.json'} --quiet") == 2
    assert "t.png at x2: SSIM needs at least 11x11 pixels" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Image.new("RGB", (20, 20)).save(tmp_path / "in.png")
    assert cli(f"upscale {tmp_path / 'in.png'} {tmp_path / 'o.png'} --scale 2 --model models:/asym_vdsr@champion") == 2
    assert "mlruns/mlflow.db does not exist; set MLFLOW_TRACKING_URI" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists(), "reading a model must not create an empty store"


def test_an_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import asymsr.stages.train

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(asymsr.stages.train, "run", interrupted)
    assert cli(f"train --arch vdsr --patches {tmp_path} --out {tmp_path / 'r'}") == 130
    assert "no checkpoint was written to" in capsys.readouterr().err  # --resume would fail: not offered
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"")
    assert cli(f"train --arch vdsr --patches {tmp_path} --out {tmp_path / 'r'}") == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"continue with `asymsr train --arch vdsr --patches {tmp_path}" in error
    assert error.rstrip().endswith("--resume`")
