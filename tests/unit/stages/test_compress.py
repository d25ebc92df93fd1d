"""The `asymsr compress` command: its contract with evaluate and upscale, and bad teachers."""

import hashlib
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.cli import main
from asymsr.nn.checkpoint import load_checkpoint, model_payload, save_checkpoint
from asymsr.nn.models import build
from asymsr.schema.records import CompressionRecord, TrainingHistory

TINY = "--rank 16 --steps 2 --params {params}"


def write_params(tmp_path: Path) -> Path:
    path = tmp_path / "compress.yaml"
    path.write_text(
        "datasets: {d: builtin:skimage/test}\ndata: {train: d, val: d, test: [d]}\ntrain: {}\nevaluate: {}\n"
        "compress:\n  refit_patches: 8\n  finetune: {device: cpu, batch_size: 4, steps_per_epoch: 1, "
        "val_crop: 32, val_scales: [2]}\n"
    )
    return path


def vdsr_npz(path: Path, depth: int = 20, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build("vdsr", depth=depth)
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    np.savez(path, **{f"conv{i:02d}": conv.weight.detach().numpy() for i, conv in enumerate(convs)})
    return path


def cli(command: str) -> int:
    return main(shlex.split(command))


def test_compressed_model_works_with_evaluate_and_upscale(patch_folder, image_folder, tmp_path):
    teacher = vdsr_npz(tmp_path / "teacher.npz")
    digest = hashlib.sha256(teacher.read_bytes()).hexdigest()
    out = tmp_path / "run"
    params = write_params(tmp_path)
    command = f"compress --teacher {teacher}#sha256={digest} --patches {patch_folder} --out {out} --val {image_folder}"
    assert cli(f"{command} {TINY.format(params=params)} --quiet") == 0
    record = CompressionRecord.read(out / "compression.json")
    assert (record.rank, record.teacher_sha256, record.steps, record.finished) == (16, digest, 2, True)
    assert [step.name for step in record.history][-1] == "distilled"
    assert len(TrainingHistory.read(out / "history.json").epochs) == 2
    assert load_checkpoint(out / "model.pt")["arch_config"]["rank"] == 16
    assert cli(f"evaluate --model {out / 'model.pt'} --data {image_folder} --scales 2 --out {tmp_path / 'e.json'} "
               "--no-latency --quiet") == 0  # fmt: skip
    photo = next(image_folder.iterdir())
    assert cli(f"upscale --model {out / 'model.pt'} --scale 2 {photo} {tmp_path / 'up.png'}") == 0
    assert Image.open(tmp_path / "up.png").size == tuple(2 * s for s in Image.open(photo).size)


def _truncated(tmp_path: Path) -> Path:
    whole = vdsr_npz(tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    return tmp_path / "cut.npz"


def _asym_checkpoint(tmp_path: Path) -> Path:
    save_checkpoint(tmp_path / "asym.pt", model_payload("asym_vdsr", build("asym_vdsr")))
    return tmp_path / "asym.pt"


def _wrong_shape(tmp_path: Path) -> Path:
    path = vdsr_npz(tmp_path / "deep.npz", depth=22)  # conv20, conv21 too many for a 20-layer VDSR
    return path


def _not_a_checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "notes.pt").write_text("not weights")
    return tmp_path / "notes.pt"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.npz", "file not found: .*missing.npz"),
        (_truncated, "cut.npz: not an .npz of plain arrays"),
        (
            lambda tmp: Path(f"{vdsr_npz(tmp / 'w.npz')}#sha256={'0' * 64}"),
            "w.npz: sha256 is [0-9a-f]{64}, but the source pins 0{64}",
        ),
        (_asym_checkpoint, "the teacher must be a VDSR"),
        (_wrong_shape, "unexpected arrays \\['conv20', 'conv21'\\]"),
        (_not_a_checkpoint, "notes.pt: not a readable checkpoint"),
        (lambda tmp: "https://example.invalid/vdsr.npz", "must pin its content"),
    ],
)
def test_bad_teachers_get_one_line_and_nothing_is_written(make, message, patch_folder, tmp_path, capsys):
    teacher = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "run"
    assert cli(f"compress --teacher {teacher} --patches {patch_folder} --out {out} --steps 1 --quiet") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("asymsr: error:")
    import re

    assert re.search(message, error), error
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, no download folder


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--rank 65", "--rank: 65 exceeds the teacher's 64 channels"),
        ("--val {tmp}/nowhere", "--val: no such folder"),
        ("--resume", "--resume: .* has no checkpoint.pt and no compression.json and no start.pt to resume from"),
    ],
)
def test_bad_flags_are_named_before_anything_is_written(flags, message, patch_folder, tmp_path, capsys):
    teacher = vdsr_npz(tmp_path / "teacher.npz")
    out = tmp_path / "run"
    command = f"compress --teacher {teacher} --patches {patch_folder} --out {out} {flags.format(tmp=tmp_path)}"
    assert cli(command) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_no_teacher_is_an_error_naming_the_flag(patch_folder, tmp_path, capsys):
    assert cli(f"compress --patches {patch_folder} --out {tmp_path / 'run'}") == 2
    assert "--teacher: no teacher given" in capsys.readouterr().err


def test_train_with_init_and_no_epochs_writes_the_given_weights(patch_folder, tmp_path):
    teacher = vdsr_npz(tmp_path / "teacher.npz", seed=4)
    out = tmp_path / "vdsr"
    assert cli(f"train --arch vdsr --patches {patch_folder} --out {out} --epochs 0 --init {teacher} --quiet") == 0
    saved = load_checkpoint(out / "model.pt")["model"]
    with np.load(teacher) as arrays:
        assert np.array_equal(saved["body.0.weight"].numpy(), arrays["conv00"])
        assert np.array_equal(saved["body.38.weight"].numpy(), arrays["conv19"])
    assert TrainingHistory.read(out / "history.json").epochs == []


def test_train_with_no_epochs_needs_init(patch_folder, tmp_path, capsys):
    assert cli(f"train --arch vdsr --patches {patch_folder} --out {tmp_path / 'r'} --epochs 0") == 2
    assert "--epochs 0 needs --init" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_init_of_another_architecture_is_refused(patch_folder, tmp_path, capsys):
    teacher = vdsr_npz(tmp_path / "teacher.npz")
    assert (
        cli(f"train --arch asym_vdsr --patches {patch_folder} --out {tmp_path / 'r'} --epochs 0 --init {teacher}") == 2
    )
    assert "needs" in capsys.readouterr().err


def test_zipfile_is_what_a_cut_npz_raises(tmp_path):
    """The bad-teacher message relies on numpy raising BadZipFile (or EOFError) for a cut archive."""
    with pytest.raises((zipfile.BadZipFile, EOFError, OSError)):
        np.load(_truncated(tmp_path))["conv00"]
