"""``asymsr upscale``: super-resolve a user's photos in memory bounded by the tile, not the photo.

The luminance goes through the model; the chroma (Cb, Cr) is bicubic-upsampled, as in VDSR.
Colour conversion is MATLAB's BT.601 (:mod:`asymsr.sr.color`) in float, so nothing is rounded
before the final PNG. Gray images are treated as luminance only.

The whole path is tiled (:func:`upscale_tiles`): for each output tile, a crop of the input with
enough margin for the bicubic taps and the network's receptive field is colour-converted,
resized and run through the network, and only the tile's centre is kept. Bicubic taps reach 3
input pixels and the network ``receptive_radius`` output pixels, so the centre equals the
untiled computation up to floating-point reassociation (bicubic: identical; network: < 1e-5 in
[0, 1] units); after rounding to uint8 a pixel can differ by at most 1 where its value sits on a
.5 boundary (tested). Rows of tiles are written to the PNG as they are finished
(:class:`asymsr.util.images.PngStream`), so memory holds the input, one row of tiles and the
network's activations for one tile.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asymsr.eval.inference import Predictor, with_context
from asymsr.sr.color import rgb_to_ycbcr, round_half_away, ycbcr_to_rgb
from asymsr.sr.protocol import SUPPORTED_SCALES
from asymsr.sr.resize import imresize
from asymsr.util.images import PngStream, read_image

BICUBIC_MARGIN = 4  # input pixels beyond what a tile's outputs need: the cubic taps reach 3


def check_scale(scale: int) -> None:
    """Refuse a scale the models were not trained for."""
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"unsupported scale {scale!r}; the models are trained for {list(SUPPORTED_SCALES)}")


def upscale_tiles(image: np.ndarray, scale: int, predictor: Predictor) -> Iterator[np.ndarray]:
    """Upscale a uint8 (H, W) or (H, W, 3) image; yields its uint8 output a row of tiles at a time.

    The rows of tiles (``predictor.tile`` output pixels high, the full output width) stacked
    in order are the output image, (sH, sW[, 3]).
    """
    check_scale(scale)
    height, width = image.shape[0] * scale, image.shape[1] * scale
    tile = predictor.tile
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        band = np.empty((bottom - top, width, *image.shape[2:]), dtype=np.uint8)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            band[:, left:right] = _upscale_tile(image, scale, predictor, (top, bottom, left, right))
        yield band


def _upscale_tile(image: np.ndarray, scale: int, predictor: Predictor, box: tuple[int, int, int, int]) -> np.ndarray:
    """The output pixels ``box`` = (top, bottom, left, right), computed from a crop of the input."""
    top, bottom, left, right = box
    # the output region the network sees (tile + its receptive field), clipped to the image
    region = with_context(box, predictor.halo, image.shape[0] * scale, image.shape[1] * scale)
    # the input crop whose bicubic upsampling covers that region exactly (integer scale: the output
    # grid of a crop starting at input pixel o is the image's grid shifted by scale * o)
    in_top = max(0, region[0] // scale - BICUBIC_MARGIN)
    in_bottom = min(image.shape[0], math.ceil(region[1] / scale) + BICUBIC_MARGIN)
    in_left = max(0, region[2] // scale - BICUBIC_MARGIN)
    in_right = min(image.shape[1], math.ceil(region[3] / scale) + BICUBIC_MARGIN)
    crop = image[in_top:in_bottom, in_left:in_right]
    upsampled = imresize(crop.astype(np.float64) if crop.ndim == 2 else rgb_to_ycbcr(crop), float(scale))
    rows = slice(region[0] - in_top * scale, region[1] - in_top * scale)
    cols = slice(region[2] - in_left * scale, region[3] - in_left * scale)
    upsampled = upsampled[rows, cols]
    luminance = upsampled if upsampled.ndim == 2 else upsampled[..., 0]
    whole = replace(predictor, tile=max(luminance.shape))  # the region is already the tile plus its halo
    predicted = whole(luminance / 255.0) * 255.0
    centre = (slice(top - region[0], bottom - region[0]), slice(left - region[2], right - region[2]))
    if upsampled.ndim == 2:
        return _to_uint8(predicted[centre])
    ycbcr = upsampled[centre].copy()
    ycbcr[..., 0] = predicted[centre]
    return _to_uint8(ycbcr_to_rgb(ycbcr))


def upscale_array(image: np.ndarray, scale: int, predictor: Predictor) -> np.ndarray:
    """Upscale a uint8 (H, W) or (H, W, 3) image by ``scale``; returns uint8 (sH, sW[, 3])."""
    return np.concatenate(list(upscale_tiles(image, scale, predictor)), axis=0)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return round_half_away(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def check_output_path(source: Path, target: Path) -> None:
    """Refuse a target that would lose data or fail only after the work: one line naming it.

    Raises:
        ValueError: not a ``.png``, a folder, inside a file, or the input itself.
    """
    if target.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {target}")
    if target.is_dir():
        raise ValueError(f"output {target} is a folder; give a .png file name")
    parent = next((p for p in [target.parent, *target.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"output {target}: {parent} is a file, not a folder")
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise ValueError(f"output {target} is the input image; refusing to overwrite it")


def upscale_file(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    scale: int,
    predictor: Predictor,
    progress: bool | None = None,
) -> Path:
    """Read ``source``, upscale it, and stream ``target`` as PNG (it appears only when complete).

    ``progress``: a bar with ETA (``None``: only on a terminal); otherwise one line at the start
    and one at the end on stderr.
    """
    source, target = Path(source), Path(target)
    check_scale(scale)
    check_output_path(source, target)
    image = read_image(source)
    height, width = image.shape[0] * scale, image.shape[1] * scale
    channels = 1 if image.ndim == 2 else 3
    report = _Progress(
        f"{source.name} -> {target.name} ({width}x{height})", math.ceil(height / predictor.tile), progress
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with PngStream(target, height, width, channels) as png:
        for band in upscale_tiles(image, scale, predictor):
            png.write(band)
            report.step()
    report.close()
    return target


class _Progress:
    """Progress per row of tiles: a tqdm bar with ETA on a terminal, else a start and an end line."""

    def __init__(self, label: str, total: int, progress: bool | None) -> None:
        interactive = sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(total=total, desc=label, unit="row of tiles") if interactive else None
        self.label, self.started = label, time.perf_counter()
        if self.bar is None:
            print(f"upscale: {label}: {total} rows of tiles", file=sys.stderr, flush=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print(f"upscale: {self.label}: done in {time.perf_counter() - self.started:.1f} s", file=sys.stderr)
