import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from asymsr.color import luminance, rgb_to_ycbcr, round_half_away, ycbcr_to_rgb
from asymsr.metrics import psnr, ssim


def test_luminance_matches_matlab_rgb2ycbcr_for_uint8():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255 rounded: 16, 235, 81.481 -> 81, 144.553 -> 145, 40.966 -> 41
    assert luminance(pixels).tolist() == [[16.0, 235.0, 81.0, 145.0, 41.0]]


def test_gray_images_are_used_as_they_are():
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    assert luminance(gray).tolist() == [[0.0, 128.0, 255.0]]
    with pytest.raises(TypeError, match="uint8"):
        luminance(gray.astype(np.float32))


def test_ycbcr_round_trip_and_half_rounding():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.float64)
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-9)
    assert round_half_away(np.array([0.5, 1.5, 2.5, -0.5])).tolist() == [1.0, 2.0, 3.0, -1.0]


def test_psnr_contract():
    a = np.full((10, 10), 100.0)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)
    b = a.copy()
    b[0, :] = 0  # only the border row differs
    assert psnr(a, b, border=1) == math.inf
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(a, a[:5])
    with pytest.raises(ValueError, match="too small"):
        psnr(a, a, border=5)


def test_ssim_equals_wang_definition_as_implemented_by_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (60, 70)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).round()
    expected = structural_similarity(
        a[3:-3, 3:-3], b[3:-3, 3:-3], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b, border=3) == pytest.approx(expected, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:10, :10], b[:10, :10])
