import numpy as np
import pytest
import torch
from PIL import Image

from asymsr.eval.inference import load_predictor, predict_tiled
from asymsr.eval.upscale import upscale_array, upscale_file
from asymsr.nn.checkpoint import CheckpointError, model_payload, save_checkpoint
from asymsr.nn.models import build
from asymsr.util.images import ImageReadError
from tests.conftest import smooth_image


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "asym.pt"
    save_checkpoint(path, model_payload("asym_vdsr", build("asym_vdsr")))
    return path


@pytest.mark.parametrize("arch", ["vdsr", "asym_vdsr"])
def test_tiled_inference_equals_whole_image_inference(arch):
    torch.manual_seed(0)
    model = build(arch).eval()
    image = np.random.default_rng(0).random((75, 98))
    whole = predict_tiled(model, image, torch.device("cpu"), tile=1000)
    tiled = predict_tiled(model, image, torch.device("cpu"), tile=32)
    assert np.abs(whole - tiled).max() < 1e-5
    too_little_context = predict_tiled(model, image, torch.device("cpu"), tile=32, halo=4)
    assert np.abs(whole - too_little_context).max() > 1e-3  # the halo is what makes tiling exact


def test_upscale_rgb_and_gray_tiled_equals_untiled(checkpoint):
    rgb = smooth_image(30, 41, seed=5)
    small, large = (
        load_predictor(checkpoint, device="cpu", tile=16),
        load_predictor(checkpoint, device="cpu", tile=4096),
    )
    up_small, up_large = upscale_array(rgb, 3, small), upscale_array(rgb, 3, large)
    assert up_small.shape == (90, 123, 3) and up_small.dtype == np.uint8
    assert np.abs(up_small.astype(int) - up_large.astype(int)).max() <= 1  # uint8 rounding of <1e-5 differences
    gray = upscale_array(rgb[..., 0], 2, large)
    assert gray.shape == (60, 82)


def test_upscale_file_with_bicubic_matches_plain_imresize(tmp_path):
    from asymsr.sr.resize import imresize

    gray = smooth_image(20, 24, channels=1, seed=6)
    Image.fromarray(gray).save(tmp_path / "in.png")
    upscale_file(tmp_path / "in.png", tmp_path / "out.png", 2, load_predictor("bicubic"))
    written = np.asarray(Image.open(tmp_path / "out.png"))
    expected = np.floor(np.clip(imresize(gray.astype(float), 2.0), 0, 255) + 0.5).astype(np.uint8)
    assert np.array_equal(written, expected)


def test_upscale_errors(tmp_path, checkpoint):
    Image.fromarray(smooth_image(8, 8)).save(tmp_path / "in.png")
    predictor = load_predictor(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="unsupported scale 5"):
        upscale_file(tmp_path / "in.png", tmp_path / "out.png", 5, predictor)
    with pytest.raises(ImageReadError, match="nothing.png"):
        upscale_file(tmp_path / "nothing.png", tmp_path / "out.png", 2, predictor)
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_predictor(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable checkpoint"):
        load_predictor(tmp_path / "garbage.pt")
    assert not (tmp_path / "out.png").exists()


def test_tiling_a_network_of_unknown_reach_needs_an_explicit_halo():
    network = torch.nn.Conv2d(1, 1, 3, padding=1)  # no receptive_radius
    image = np.random.default_rng(0).random((40, 40))
    assert predict_tiled(network, image, torch.device("cpu"), tile=64).shape == (40, 40)  # one tile: no edges
    with pytest.raises(ValueError, match="Conv2d has no receptive_radius: give the tile halo"):
        predict_tiled(network, image, torch.device("cpu"), tile=16)
    assert predict_tiled(network, image, torch.device("cpu"), tile=16, halo=1).shape == (40, 40)
