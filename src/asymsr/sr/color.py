"""MATLAB-compatible BT.601 colour conversion (``rgb2ycbcr`` / ``ycbcr2rgb``).

MATLAB's ``rgb2ycbcr`` on a uint8 image computes, in double precision,
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (and likewise Cb, Cr around 128) and casts
back to uint8, which rounds half away from zero. Y then lies in [16, 235] and Cb, Cr in
[16, 240]. The super-resolution literature evaluates on that rounded Y.
"""

from __future__ import annotations

import numpy as np

_RGB_TO_YCBCR = (
    np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64)
    / 255.0
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round as MATLAB's cast to an integer type does: halves go away from zero."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Convert RGB in [0, 255] (uint8 or float, shape (H, W, 3)) to float64 YCbCr, unrounded.

    Y is in [16, 235], Cb and Cr in [16, 240] for inputs in [0, 255].
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape (H, W, 3), got {rgb.shape}")
    return rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Invert :func:`rgb_to_ycbcr`: float YCbCr (H, W, 3) to float64 RGB in about [0, 255], unclipped."""
    if ycbcr.ndim != 3 or ycbcr.shape[2] != 3:
        raise ValueError(f"expected a YCbCr array of shape (H, W, 3), got {ycbcr.shape}")
    return (ycbcr.astype(np.float64) - _YCBCR_OFFSET) @ _YCBCR_TO_RGB.T


def luminance(image: np.ndarray) -> np.ndarray:
    """The evaluation luminance of a uint8 image, as float64 in [0, 255] with integer values.

    RGB (H, W, 3): MATLAB ``rgb2ycbcr`` Y, rounded as MATLAB rounds for uint8 input, so in
    [16, 235]. Gray (H, W): the gray values as they are (in [0, 255]), as the SR literature
    does for gray test images such as Set14's ``bridge``.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"luminance expects a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image.astype(np.float64)
    return round_half_away(rgb_to_ycbcr(image)[..., 0])
