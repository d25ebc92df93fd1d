"""Scales: the ones the models are trained for, and the check of any scale (torch- and scipy-free)."""

from __future__ import annotations

import numpy as np

SUPPORTED_SCALES = (2, 3, 4)


def check_scale(scale: int) -> int:
    """Return ``scale`` if it is an integer >= 2, else raise ValueError naming it."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    return int(scale)
