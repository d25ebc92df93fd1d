"""``asymsr upscale``: super-resolve a user's image file.

The luminance goes through the model; the chroma (Cb, Cr) is bicubic-upsampled, as in VDSR.
Colour conversion is MATLAB's BT.601 (:mod:`asymsr.sr.color`) in float, so nothing is rounded
before the final PNG. Gray images are treated as luminance only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asymsr.eval.inference import Predictor
from asymsr.sr.color import rgb_to_ycbcr, round_half_away, ycbcr_to_rgb
from asymsr.sr.protocol import SUPPORTED_SCALES
from asymsr.sr.resize import imresize
from asymsr.util.images import read_image, write_png


def upscale_array(image: np.ndarray, scale: int, predictor: Predictor) -> np.ndarray:
    """Upscale a uint8 (H, W) or (H, W, 3) image by ``scale``; returns uint8 (sH, sW[, 3])."""
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"unsupported scale {scale!r}; the models are trained for {list(SUPPORTED_SCALES)}")
    if image.ndim == 2:
        y_unit = imresize(image.astype(np.float64), float(scale)) / 255.0
        return _to_uint8(predictor(y_unit) * 255.0)
    upsampled = imresize(rgb_to_ycbcr(image), float(scale))
    upsampled[..., 0] = predictor(upsampled[..., 0] / 255.0) * 255.0
    return _to_uint8(ycbcr_to_rgb(upsampled))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return round_half_away(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def upscale_file(
    source: str | os.PathLike[str], target: str | os.PathLike[str], scale: int, predictor: Predictor
) -> Path:
    """Read ``source``, upscale it, and write ``target`` as PNG (atomically). Returns ``target``."""
    target = Path(target)
    if target.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {target}")
    write_png(target, upscale_array(read_image(source), scale, predictor))
    return target
