"""The VDSR evaluation protocol: degradation of a test image and scoring of a result.

For a uint8 HR image and an integer scale s:

1. ``hr_y = luminance(image)``: MATLAB ``rgb2ycbcr`` Y, rounded to integers (gray: as is).
2. :func:`modcrop`: crop the bottom/right so that height and width are multiples of s.
3. :func:`degrade`: ``lr = imresize(hr_y, 1/s)`` kept in float (no rounding), then
   ``network_input = imresize(lr, s) / 255``, which has exactly the cropped HR size.
4. The network output (or the bicubic input itself) goes back to [0, 255] and is clipped and
   rounded to integers by :func:`quantize`, as the published evaluation code stores results
   as uint8 images.
5. PSNR and SSIM on Y with s pixels shaved per border (:mod:`asymsr.sr.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asymsr.sr.color import luminance, round_half_away
from asymsr.sr.metrics import psnr, ssim
from asymsr.sr.resize import imresize
from asymsr.sr.scales import SUPPORTED_SCALES, check_scale

__all__ = ["SUPPORTED_SCALES", "TestPair", "check_scale", "degrade", "make_test_pair", "modcrop", "quantize", "score"]


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right edges so that height and width are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def degrade(hr_y: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic network input in [0, 1] (float64, about: bicubic may overshoot) for HR luminance.

    ``hr_y`` is float luminance on the [0, 255] scale whose size is a multiple of ``scale``.
    """
    scale = check_scale(scale)
    if hr_y.shape[0] % scale or hr_y.shape[1] % scale:
        raise ValueError(f"image size {hr_y.shape[:2]} is not a multiple of scale {scale}; modcrop it first")
    low_res = imresize(hr_y, 1.0 / scale)
    return imresize(low_res, output_shape=hr_y.shape[:2]) / 255.0


def quantize(y_unit: np.ndarray) -> np.ndarray:
    """Network output in [0, 1] units -> float64 integers in [0, 255].

    Clips to [0, 255], then rounds halves up, as MATLAB's ``uint8()`` cast does.
    """
    return round_half_away(np.clip(y_unit * 255.0, 0.0, 255.0))


@dataclass(frozen=True)
class TestPair:
    """One test image prepared for scale ``scale``: cropped HR Y in [0, 255] and the input in [0, 1]."""

    hr_y: np.ndarray
    network_input: np.ndarray
    scale: int


def make_test_pair(image: np.ndarray, scale: int) -> TestPair:
    """Apply steps 1-3 of the protocol to a uint8 image of shape (H, W) or (H, W, 3)."""
    hr_y = modcrop(luminance(image), check_scale(scale))
    return TestPair(hr_y=hr_y, network_input=degrade(hr_y, scale), scale=scale)


def score(pair: TestPair, output_unit: np.ndarray, with_ssim: bool = True) -> dict[str, float]:
    """PSNR (dB) and, unless ``with_ssim`` is false, SSIM of an output in [0, 1] units against ``pair.hr_y``."""
    estimate = quantize(output_unit)
    scores = {"psnr": psnr(pair.hr_y, estimate, border=pair.scale)}
    if with_ssim:
        scores["ssim"] = ssim(pair.hr_y, estimate, border=pair.scale)
    return scores
