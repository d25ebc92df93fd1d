import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from asymsr.sr.color import luminance, rgb_to_ycbcr, round_half_away, ycbcr_to_rgb
from asymsr.sr.metrics import psnr, ssim
from tests.unit.sr.patterns import ring_count, rings

# MATLAB rgb2ycbcr for uint8, BT.601: 255 * (Y, Cb, Cr) = 255 * offset + M @ (R, G, B).
OFFSET = (16.0, 128.0, 128.0)
M = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))

# Pixels whose exact Y lies within 0.0006 of a rounding boundary (x.5), with the channel of one
# coefficient at 255: a change of that coefficient in its third decimal (0.001 x 255 / 255 =
# 0.001 in Y, or more) moves Y across the boundary and changes the rounded Y by one. Two per
# coefficient: one just below a half (a larger coefficient rounds up) and one just above (a
# smaller one rounds down). Found by exhaustive search over the 2**24 colours.
BOUNDARY_PIXELS = [
    (255, 139, 122),  # Y = 163.49950...
    (255, 140, 219),  # Y = 173.50050...
    (6, 255, 45),  # Y = 150.49949...
    (38, 255, 196),  # Y = 173.50050...
    (50, 47, 255),  # Y = 77.49949...
    (10, 113, 255),  # Y = 100.50050...
]


def exact_y(r: int, g: int, b: int) -> int:
    """MATLAB's rounded Y in exact integer arithmetic: thousandths of 255 * Y, rounded half up."""
    thousandths = 255_000 * 16 + 65_481 * r + 128_553 * g + 24_966 * b
    return (thousandths + 127_500) // 255_000


def test_ycbcr_of_the_primaries_is_the_published_matrix():
    """Pure red, green and blue at 255 give each column of BT.601's matrix plus the offsets."""
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]]], dtype=np.uint8)
    expected = [[OFFSET[row] + M[row][col] for row in range(3)] for col in range(3)] + [list(OFFSET)]
    assert np.allclose(rgb_to_ycbcr(pixels)[0], expected, rtol=0, atol=1e-9)


def test_ycbcr_to_rgb_maps_the_published_values_back_to_the_primaries():
    """The inverse takes the published YCbCr of black, white and the primaries to those colours."""
    primaries = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    ycbcr = [[OFFSET[row] + M[row][col] for row in range(3)] for col in range(3)]
    ycbcr += [list(OFFSET), [OFFSET[0] + sum(M[0]), 128.0 + sum(M[1]), 128.0 + sum(M[2])]]
    rgb = ycbcr_to_rgb(np.array([ycbcr], dtype=np.float64))[0]
    assert np.allclose(rgb, [*primaries, [0, 0, 0], [255, 255, 255]], rtol=0, atol=1e-9)


def test_rounded_y_at_rounding_boundaries_matches_integer_arithmetic():
    """Y of pixels a hair from x.5 equals the exact integer computation (coefficients to the last digit)."""
    pixels = np.array([BOUNDARY_PIXELS], dtype=np.uint8)
    for r, g, b in BOUNDARY_PIXELS:  # each is within 0.001 x 255 / 255 of a boundary, as the comment says
        assert abs((255_000 * 16 + 65_481 * r + 128_553 * g + 24_966 * b) % 255_000 - 127_500) < 255
    assert luminance(pixels)[0].tolist() == [exact_y(*pixel) for pixel in BOUNDARY_PIXELS]


def test_luminance_matches_matlab_rgb2ycbcr_for_uint8():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255 rounded: 16, 235, 81.481 -> 81, 144.553 -> 145, 40.966 -> 41
    assert luminance(pixels).tolist() == [[16.0, 235.0, 81.0, 145.0, 41.0]]


def test_colour_conversions_check_the_shape():
    """Both conversions take (H, W, 3) only, and say so."""
    for bad in (np.zeros((4, 5)), np.zeros((4, 5, 4))):
        with pytest.raises(ValueError, match=r"^expected an RGB array of shape \(H, W, 3\), got \(4, 5"):
            rgb_to_ycbcr(bad)
        with pytest.raises(ValueError, match=r"^expected a YCbCr array of shape \(H, W, 3\), got \(4, 5"):
            ycbcr_to_rgb(bad)


def test_gray_images_are_used_as_they_are():
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    assert luminance(gray).tolist() == [[0.0, 128.0, 255.0]]
    with pytest.raises(TypeError, match="uint8"):
        luminance(gray.astype(np.float32))


def test_round_half_away_rounds_halves_away_from_zero():
    """MATLAB's cast: halves go away from zero whatever the parity (numpy's round would give 0, 2, -2)."""
    values = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999, -0.49999, 7.0, 254.5])
    assert round_half_away(values).tolist() == [1.0, 2.0, 3.0, -1.0, -3.0, 0.0, -0.0, 7.0, 255.0]


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


def test_metrics_check_their_arguments():
    """2-D arrays only, a non-negative border, and at least one pixel left on each axis after shaving."""
    assert psnr(np.zeros((11, 11)), np.ones((11, 11)), border=5) == pytest.approx(20 * math.log10(255))  # 1x1 left
    for shape in [(10, 11), (11, 10)]:
        with pytest.raises(ValueError, match=rf"^image of shape \({shape[0]}, {shape[1]}\) is too small to shave 5"):
            psnr(np.zeros(shape), np.zeros(shape), border=5)
    with pytest.raises(ValueError, match="^border must be >= 0, got -1"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), border=-1)
    with pytest.raises(ValueError, match=r"^expected 2-D luminance arrays, got shape \(4, 4, 1\)"):
        ssim(np.zeros((4, 4, 1)), np.zeros((4, 4, 1)))


@pytest.mark.parametrize("border", [0, 1, 2, 3, 4])
def test_psnr_shaves_exactly_border_pixels(border):
    """Errors of 50 on the last shaved ring and 10 on the first kept one: only the 10s count."""
    size = 2 * border + 11
    reference = np.full((size, size), 100.0)
    errors = {0: 10.0} if border == 0 else {border - 1: 50.0, border: 10.0}
    estimate = reference + rings(size, errors)
    mse = ring_count(size, border) * 10.0**2 / 11**2
    assert psnr(reference, estimate, border=border) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)


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


def test_metrics_shave_nothing_by_default():
    """Without ``border`` every pixel counts: an error on the outer ring alone is seen, and 11x11 is enough for SSIM."""
    reference = np.full((11, 11), 100.0)
    estimate = reference + rings(11, {0: 10.0})
    assert psnr(reference, estimate) == pytest.approx(10 * math.log10(255**2 / (ring_count(11, 0) * 100 / 121)))
    assert ssim(reference, reference) == pytest.approx(1.0, abs=1e-12)
