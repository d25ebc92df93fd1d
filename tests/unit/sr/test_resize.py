"""MATLAB imresize semantics. The expected weights are derived by hand from Keys' cubic kernel
(a = -0.5): for x2 upsampling the sample positions fall at distances 0.25, 0.75, 1.25, 1.75
from the taps, giving k(1.75), k(0.75), k(0.25), k(1.25) = -0.0234375, 0.2265625, 0.8671875,
-0.0703125. For 1/2 downsampling with antialiasing the kernel is 0.5 k(0.5 d) at distances
0.5, 1.5, ..., 3.5, giving 0.5 k(0.25), 0.5 k(0.75), 0.5 k(1.25), 0.5 k(1.75) = 0.43359375,
0.11328125, -0.03515625, -0.01171875 (already summing to 0.5 per side)."""

import numpy as np
import pytest

from asymsr.sr.resize import contributions, cubic, imresize, output_length

UP2 = [-0.0234375, 0.2265625, 0.8671875, -0.0703125]
DOWN2 = [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]


def test_cubic_kernel_values():
    assert cubic(np.array([0.0, 1.0, 2.0, 0.5, 1.5])).tolist() == [1.0, 0.0, 0.0, 0.5625, -0.0625]


def test_upsampling_weights_and_symmetric_border():
    weights, indices = contributions(10, 20, 2.0)
    assert np.allclose(weights[2], UP2, atol=1e-15)
    assert np.allclose(weights[3], UP2[::-1], atol=1e-15)
    # Output pixel 1 (1-based) samples u = 0.75 from taps -1, 0, 1, 2 (1-based), mirrored with edge
    # repetition to 2, 1, 1, 2, i.e. 0-based 1, 0, 0, 1; pixel 20 (u = 10.25) uses taps 9..12 -> 8, 9, 9, 8.
    assert indices[0].tolist() == [1, 0, 0, 1]
    assert np.allclose(weights[0], UP2, atol=1e-15)
    assert indices[-1].tolist() == [8, 9, 9, 8]


def test_antialiased_downsampling_weights():
    weights, indices = contributions(20, 10, 0.5)
    assert np.allclose(weights[3], DOWN2, atol=1e-15)
    assert indices[3].tolist() == list(range(3, 11))
    assert indices[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]


def test_imresize_matches_weights_on_a_signal():
    signal = np.arange(12, dtype=np.float64) ** 2
    image = np.tile(signal, (3, 1))
    result = imresize(image, 2.0)
    assert result.shape == (6, 24)
    expected = float(np.dot(UP2, signal[[1, 2, 3, 4]]))  # output column 6 (0-based) uses taps 1..4
    assert result[1, 6] == pytest.approx(expected, abs=1e-12)


def test_constant_images_stay_constant_and_sizes_follow_ceil():
    image = np.full((25, 31, 3), 7.5)
    for scale in (0.5, 0.7, 1 / 3, 2, 3, 4):
        result = imresize(image, scale)
        assert result.shape == (output_length(25, scale), output_length(31, scale), 3)
        assert np.allclose(result, 7.5, atol=1e-12)
    assert output_length(510, 1 / 3) == 170
    assert output_length(25, 0.7) == 18  # ceil(17.5)


def test_down_then_up_is_close_on_smooth_images():
    y, x = np.mgrid[0:48, 0:60].astype(np.float64)
    image = 100 + 50 * np.sin(x / 9.0) * np.cos(y / 11.0)
    restored = imresize(imresize(image, 0.5), output_shape=image.shape)
    assert np.abs(restored - image)[4:-4, 4:-4].max() < 2.0


def test_rejects_bad_arguments():
    """Exactly one of scale and output_shape, both positive; an image of at least 1x1 with 2 or 3 axes."""
    with pytest.raises(ValueError, match="^give exactly one of scale and output_shape$"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="^give exactly one of scale and output_shape$"):
        imresize(np.zeros((4, 4)), 2.0, output_shape=(8, 8))
    for scale in (-1.0, 0.0):
        with pytest.raises(ValueError, match=f"^scale must be positive, got {scale}"):
            imresize(np.zeros((4, 4)), scale)
    with pytest.raises(ValueError, match=r"^output_shape must be positive, got \(0, 3\)"):
        imresize(np.zeros((4, 4)), output_shape=(0, 3))
    for shape in [(4,), (0, 4), (4, 4, 1, 1)]:
        with pytest.raises(ValueError, match=r"^expected an image of shape \(H, W\) or \(H, W, C\)"):
            imresize(np.zeros(shape), 2.0)


def test_single_rows_columns_and_channels_are_valid_sizes():
    """A 1-pixel side is an image like any other, in and out; only H and W need to be positive."""
    assert np.allclose(imresize(np.full((1, 5), 3.0), 2.0), 3.0) and imresize(np.ones((1, 5)), 2.0).shape == (2, 10)
    assert imresize(np.ones((4, 6)), output_shape=(1, 3)).shape == (1, 3)
    assert imresize(np.ones((3, 4, 0)), 2.0).shape == (6, 8, 0)


@pytest.mark.parametrize("output_shape", [(24, 9), (9, 24)])
def test_the_dimension_with_the_smaller_scale_is_resized_first(output_shape):
    """As MATLAB: one axis at a time, the smaller scale first, which fixes the float rounding bit for bit.

    Resizing one axis at a time through output_shape (the other axis at scale 1, which copies it
    exactly) gives the documented order; the other order differs in the last bits.
    """
    image = np.random.default_rng(1).uniform(0, 255, (16, 16))
    rows, cols = output_shape
    first = (16, cols) if cols / 16 < rows / 16 else (rows, 16)
    two_steps = imresize(imresize(image, output_shape=first), output_shape=output_shape)
    assert np.array_equal(imresize(image, output_shape=output_shape), two_steps)
