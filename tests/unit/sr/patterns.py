"""Synthetic error patterns whose PSNR and SSIM have closed forms (shared by the sr tests)."""

import numpy as np


def rings(size: int, values: dict[int, float]) -> np.ndarray:
    """A (size, size) array whose ring k (pixels k from the nearest edge) holds values[k], else 0."""
    index = np.arange(size)
    depth = np.minimum(
        np.minimum(index[:, None], index[::-1][:, None]), np.minimum(index[None, :], index[::-1][None, :])
    )
    out = np.zeros((size, size))
    for ring, value in values.items():
        out[depth == ring] = value
    return out


def ring_count(size: int, ring: int) -> int:
    """Pixels in ring ``ring`` of a size x size square: the perimeter of a (size - 2 ring) square."""
    return 4 * (size - 2 * ring - 1)
