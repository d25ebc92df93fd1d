"""The evaluation protocol (:mod:`asymsr.sr.protocol`) pinned on small synthetic images, without ../shared.

Every expected value is worked out in the test by closed-form arithmetic (PSNR of a known
error pattern, SSIM of constant windows, Y of a flat colour), not by the library's own
functions, so a wrong shave or scaling fails here even in a clone without the Set5/Set14
datasets. The colour and metric constants are pinned the same way in test_color_metrics.py.
"""

import math

import numpy as np
import pytest

from asymsr.sr import protocol
from asymsr.sr.metrics import ssim
from asymsr.sr.protocol import degrade, make_test_pair, modcrop, quantize, score
from tests.unit.sr.patterns import ring_count, rings


def test_quantize_clips_and_rounds_halves_up():
    """[0, 1] units -> integers in [0, 255]; halves (k + 0.5) round up whatever the parity of k."""
    halves = np.array([1, 5, 509]) / 510  # 0.5, 2.5 and 254.5 after the multiplication by 255
    assert (halves * 255.0).tolist() == [0.5, 2.5, 254.5]
    assert quantize(halves).tolist() == [1.0, 3.0, 255.0]
    assert quantize(np.array([-0.5, 0.0, 1.0, 1.5, 100 / 255])).tolist() == [0.0, 0.0, 255.0, 255.0, 100.0]
    assert quantize(np.arange(256) / 255).tolist() == list(range(256))  # every level maps back to itself


def test_modcrop_keeps_the_top_left_multiple_of_the_scale():
    image = np.arange(11 * 14).reshape(11, 14)
    assert np.array_equal(modcrop(image, 4), image[:8, :12])
    assert np.array_equal(modcrop(image, 2), image[:10, :14])
    assert modcrop(np.zeros((12, 9, 3)), 3).shape == (12, 9, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_degrade_is_in_unit_range_and_keeps_linear_ramps_inside(scale):
    """Bicubic down and up reproduces a linear ramp away from the borders; output is /255, same size.

    Keys' kernel reproduces linear functions, and both resizes are symmetric and normalised, so
    only pixels within reach of the mirrored border (2 x scale for the shrink, 2 more low-res
    pixels for the enlargement) differ from the ramp.
    """
    size = 16 * scale
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    ramp = 40.0 + 2.0 * rows + 1.5 * cols
    result = degrade(ramp, scale)
    assert result.shape == ramp.shape
    inside = slice(4 * scale, size - 4 * scale)
    assert np.allclose(result[inside, inside], ramp[inside, inside] / 255.0, rtol=0, atol=1e-9)
    assert np.allclose(degrade(np.full((size, size), 200.0), scale), 200.0 / 255.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="multiple of scale"):
        degrade(ramp[:-1], scale)


def test_degrade_loses_what_the_low_resolution_cannot_hold():
    """A one-pixel checkerboard of 0 and 255 shrunk by 2 is flat 127.5: every pair of symmetric taps
    of the antialiased kernel covers one black and one white pixel. So the x2 input is 0.5 inside."""
    rows, cols = np.mgrid[0:32, 0:32]
    checkerboard = 255.0 * ((rows + cols) % 2)
    assert np.allclose(degrade(checkerboard, 2)[8:-8, 8:-8], 0.5, rtol=0, atol=1e-9)


def test_make_test_pair_crops_the_y_of_the_image():
    """Steps 1-3: rounded Y, cropped to a multiple of the scale; the input has the cropped size.

    An orange of (255, 128, 0): Y = 16 + (65.481 x 255 + 128.553 x 128) / 255 = 146.0096..., so 146.
    """
    image = np.tile(np.array([255, 128, 0], dtype=np.uint8), (14, 17, 1))
    pair = make_test_pair(image, 3)
    assert pair.scale == 3 and pair.hr_y.shape == pair.network_input.shape == (12, 15)
    assert np.all(pair.hr_y == 146.0)
    assert np.allclose(pair.network_input, 146.0 / 255.0, rtol=0, atol=1e-12)
    gray = np.arange(10 * 9, dtype=np.uint8).reshape(10, 9)
    assert np.array_equal(make_test_pair(gray, 4).hr_y, gray[:8, :8].astype(np.float64))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_score_shaves_scale_pixels_for_psnr(scale):
    """score: PSNR on the HR Y with exactly ``scale`` pixels shaved per side (errors placed as above)."""
    size = 2 * scale + 11
    hr_y = np.full((size, size), 100.0)
    estimate = hr_y + rings(size, {scale - 1: 50.0, scale: 10.0})
    pair = protocol.TestPair(hr_y=hr_y, network_input=np.zeros_like(hr_y), scale=scale)
    mse = ring_count(size, scale) * 10.0**2 / 11**2
    result = score(pair, estimate / 255.0, with_ssim=False)
    assert set(result) == {"psnr"}
    assert result["psnr"] == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_score_shaves_scale_pixels_for_ssim(scale):
    """score: SSIM with exactly ``scale`` pixels shaved, on an image that is 11x11 once shaved.

    HR Y is 100 everywhere and the output 110 inside, 0 on the shaved rings: the one 11x11 window
    is constant, so SSIM = (2 x 100 x 110 + C1) / (100^2 + 110^2 + C1), C1 = (0.01 x 255)^2 (the
    variance terms are 0 / 0 + C2 / C2 = 1). Shaving less takes in zeros; shaving more leaves
    less than one window.
    """
    size = 2 * scale + 11
    hr_y = np.full((size, size), 100.0)
    output = np.zeros((size, size))
    output[scale:-scale, scale:-scale] = 110.0
    pair = protocol.TestPair(hr_y=hr_y, network_input=np.zeros_like(hr_y), scale=scale)
    c1 = (0.01 * 255) ** 2
    result = score(pair, output / 255.0)
    assert result["ssim"] == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-9)
    assert result["psnr"] == pytest.approx(20 * math.log10(255 / 10), rel=1e-12)
    assert ssim(hr_y, output, border=scale) == result["ssim"]
