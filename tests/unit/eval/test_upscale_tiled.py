"""Upscaling real photos: the tiled, streamed path equals the whole-image computation, memory
follows the tile and not the photo, and every bad input or output is refused before any work."""

from __future__ import annotations

import shlex
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.cli import main
from asymsr.eval.inference import Predictor, predictor_for
from asymsr.eval.upscale import upscale_array, upscale_file
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import build
from asymsr.sr.color import rgb_to_ycbcr, round_half_away, ycbcr_to_rgb
from asymsr.sr.resize import imresize
from asymsr.util.images import ImageReadError, PngStream, read_image

CPU = torch.device("cpu")


def whole_image(image: np.ndarray, scale: int, model: torch.nn.Module | None) -> np.ndarray:
    """The untiled reference: bicubic of the whole image, the network on the whole luminance."""
    network = Predictor(name="reference", model=model, device=CPU, tile=1 << 20)
    if image.ndim == 2:
        values = network(imresize(image.astype(np.float64), float(scale)) / 255.0) * 255.0
    else:
        values = imresize(rgb_to_ycbcr(image), float(scale))
        values[..., 0] = network(values[..., 0] / 255.0) * 255.0
        values = ycbcr_to_rgb(values)
    return round_half_away(np.clip(values, 0, 255)).astype(np.uint8)


def trained_like(seed: int) -> torch.nn.Module:
    """A small VDSR with weights large enough that its residual is far from zero (seams would show)."""
    torch.manual_seed(seed)
    model = build("vdsr", depth=6, channels=8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model.eval()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiles_equal_the_whole_image_at_every_scale_and_tile_size(scale: int) -> None:
    model = trained_like(scale)
    rgb = np.random.default_rng(scale).integers(0, 256, (29, 43, 3), dtype=np.uint8)
    reference = whole_image(rgb, scale, model)
    assert np.abs(reference.astype(int) - whole_image(rgb, scale, None).astype(int)).max() > 20  # not bicubic
    for tile in (16, 37, 4096):
        tiled = upscale_array(rgb, scale, predictor_for(model, "vdsr", "m", CPU, tile=tile))
        difference = np.abs(tiled.astype(int) - reference.astype(int))
        # stated tolerance: float reassociation (< 1e-5) can move a value across a .5 rounding edge
        assert tiled.shape == reference.shape and difference.max() <= 1 and (difference > 0).mean() < 1e-3
        gray = upscale_array(rgb[..., 1], scale, predictor_for(model, "vdsr", "m", CPU, tile=tile))
        assert np.abs(gray.astype(int) - whole_image(rgb[..., 1], scale, model).astype(int)).max() <= 1
    bicubic = Predictor(name="bicubic", model=None, device=CPU, tile=16)
    assert np.array_equal(upscale_array(rgb, scale, bicubic), whole_image(rgb, scale, None))  # exact


def peak_bytes(function, *args) -> int:
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_follows_the_tile_not_the_photo(tmp_path: Path) -> None:
    bicubic = Predictor(name="bicubic", model=None, device=CPU, tile=32)
    peaks = {}
    for height in (100, 800):  # 8x the rows: the x4 output grows by 8 x 400 x 400 x 3 bytes ~ 3.8 MB
        rng = np.random.default_rng(height)
        Image.fromarray(rng.integers(0, 256, (height, 100, 3), dtype=np.uint8)).save(tmp_path / f"{height}.png")
        peaks[height] = peak_bytes(upscale_file, tmp_path / f"{height}.png", tmp_path / f"{height}x4.png", 4, bicubic)
    input_growth = 700 * 100 * 3
    assert peaks[800] - peaks[100] < 2 * input_growth + 100_000, peaks
    written = read_image(tmp_path / "800x4.png")
    assert written.shape == (3200, 400, 3)
    assert np.array_equal(written, whole_image(read_image(tmp_path / "800.png"), 4, None))


def test_a_png_stream_appears_only_when_complete(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    with pytest.raises(RuntimeError):
        with PngStream(tmp_path / "out.png", 9, 7, 3) as png:
            png.write(rows[:4])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with PngStream(tmp_path / "out.png", 9, 7, 3) as png:
        png.write(rows[:4])
        png.write(rows[4:])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), rows)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path, monkeypatch) -> None:
    Image.new("L", (300, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setenv("ASYMSR_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(ImageReadError, match=r"300x200 = 60,000 pixels exceeds the limit of 50,000.*ASYMSR_MAX"):
        read_image(tmp_path / "bomb.png")
    monkeypatch.setenv("ASYMSR_MAX_IMAGE_PIXELS", "60000")
    assert read_image(tmp_path / "bomb.png").shape == (200, 300)


def cli(command: str) -> int:
    return main(shlex.split(command))


@pytest.fixture
def photo_and_model(tmp_path: Path) -> tuple[Path, Path]:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    save_checkpoint(tmp_path / "m.pt", model_payload("vdsr", trained_like(0)))
    return tmp_path / "a.png", tmp_path / "m.pt"


def test_inputs_and_outputs_are_checked_before_the_model_loads(photo_and_model, tmp_path: Path, capsys) -> None:
    photo, _ = photo_and_model
    original = photo.read_bytes()
    (tmp_path / "a_file").write_text("x")
    missing_model = tmp_path / "absent.pt"  # would be the error if the model loaded first
    for command, problem in [
        (f"upscale {photo} {photo} --scale 2", "is the input image; refusing to overwrite it"),
        (f"upscale {photo} {tmp_path} --scale 2", "must be a .png"),
        (f"upscale {photo} {tmp_path / 'dir.png'} --scale 2", "is a folder"),
        (f"upscale {photo} {tmp_path / 'a_file' / 'x.png'} --scale 2", "a_file is a file, not a folder"),
        (f"upscale {photo} {tmp_path / 'o.png'} --scale 5", "unsupported scale 5"),
        (f"upscale {tmp_path / 'none.png'} {tmp_path / 'o.png'} --scale 2", "none.png: no such image file"),
    ]:
        (tmp_path / "dir.png").mkdir(exist_ok=True)
        assert cli(f"{command} --model {missing_model}") == 2, command
        error = capsys.readouterr().err
        assert problem in error and error.count("\n") == 1, (command, error)
    assert photo.read_bytes() == original and not (tmp_path / "o.png").exists()


def test_a_folder_of_photos_is_upscaled_into_another_folder(photo_and_model, tmp_path: Path, capsys) -> None:
    photo, model = photo_and_model
    Image.fromarray(np.full((10, 12), 90, np.uint8)).save(tmp_path / "b.jpg")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in (photo, tmp_path / "b.jpg"):
        path.rename(inputs / path.name)
    out = tmp_path / "out"
    assert cli(f"upscale {inputs} {out} --scale 3 --model {model} --deploy as_trained") == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert read_image(out / "a.png").shape == (60, 72, 3) and read_image(out / "b.png").shape == (30, 36)
    assert cli(f"upscale {inputs} {out} --scale 3 --model {model}") == 2
    assert "exists (2 outputs do); pass --force" in capsys.readouterr().err
    assert cli(f"upscale {inputs} {inputs} --scale 3 --model {model}") == 2
    assert "is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in inputs.iterdir()) == ["a.png", "b.jpg"]


def test_the_row_kernel_deploy_form_tiles_without_seams() -> None:
    from asymsr.nn.rowkernel import KernelUnavailable, RowKernelVDSR

    torch.manual_seed(1)
    model = build("asym_vdsr", depth=6, channels=16)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(2.0)
    model.eval()
    try:
        kernel = RowKernelVDSR(model)
    except KernelUnavailable as error:
        pytest.skip(f"no row kernel on this machine: {error}")
    rgb = np.random.default_rng(7).integers(0, 256, (27, 35, 3), dtype=np.uint8)
    reference = whole_image(rgb, 2, model)
    predictor = Predictor(name="k", model=kernel, device=CPU, tile=16, stored=model)  # as --deploy auto runs it
    difference = np.abs(upscale_array(rgb, 2, predictor).astype(int) - reference.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
