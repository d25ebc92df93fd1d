"""MATLAB imresize semantics. The expected weights are derived by hand from Keys' cubic kernel
(a = -0.5): for x2 upsampling the sample positions fall at distances 0.25, 0.75, 1.25, 1.75
from the taps, giving k(1.75), k(0.75), k(0.25), k(1.25) = -0.0234375, 0.2265625, 0.8671875,
-0.0703125. For 1/2 downsampling with antialiasing the kernel is 0.5 k(0.5 d) at distances
0.5, 1.5, ..., 3.5, giving 0.5 k(0.25), 0.5 k(0.75), 0.5 k(1.25), 0.5 k(1.75) = 0.43359375,
0.11328125, -0.03515625, -0.01171875 (already summing to 0.5 per side)."""

import numpy as np
import pytest

from asymsr.resize import contributions, cubic, imresize, output_length

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
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((4, 4)), -1.0)
