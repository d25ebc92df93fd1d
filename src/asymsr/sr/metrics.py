"""PSNR and SSIM on luminance, as the SR literature's MATLAB evaluation code computes them.

Both take two arrays of the same shape (H, W) with values on the [0, 255] scale, compute in
float64, and shave ``border`` pixels from every side first (the SR convention is
``border = scale``). They do no rounding or clipping themselves: the evaluation protocol
(:func:`asymsr.sr.protocol.quantize`) clips and rounds the network output before calling them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

PEAK = 255.0


def _shaved_pair(reference: np.ndarray, estimate: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if reference.shape != estimate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs estimate {estimate.shape}")
    if reference.ndim != 2:
        raise ValueError(f"expected 2-D luminance arrays, got shape {reference.shape}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    height, width = reference.shape
    if height <= 2 * border or width <= 2 * border:
        raise ValueError(f"image of shape {reference.shape} is too small to shave {border} pixels per side")
    window = (slice(border, height - border), slice(border, width - border))
    return reference[window].astype(np.float64), estimate[window].astype(np.float64)


def psnr(reference: np.ndarray, estimate: np.ndarray, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB for peak 255; ``inf`` for identical images."""
    ref, est = _shaved_pair(reference, estimate, border)
    mse = float(np.mean((ref - est) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation (MATLAB ``filter2(w * w', x, 'valid')``)."""
    half = window.size // 2
    filtered = correlate1d(correlate1d(image, window, axis=0, mode="constant"), window, axis=1, mode="constant")
    return filtered[half:-half, half:-half]


def ssim(reference: np.ndarray, estimate: np.ndarray, border: int = 0) -> float:
    """Structural similarity of Wang et al. (2004) as their MATLAB ``ssim_index`` computes it.

    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, statistics over the
    'valid' region (no padding), and the mean of the SSIM map. In [-1, 1]; 1 for identical
    images. Images must be at least 11x11 after shaving.
    """
    ref, est = _shaved_pair(reference, estimate, border)
    if min(ref.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {ref.shape}")
    c1 = (0.01 * PEAK) ** 2
    c2 = (0.03 * PEAK) ** 2
    window = _gaussian_window()
    mu_ref = _filter_valid(ref, window)
    mu_est = _filter_valid(est, window)
    var_ref = _filter_valid(ref * ref, window) - mu_ref**2
    var_est = _filter_valid(est * est, window) - mu_est**2
    covariance = _filter_valid(ref * est, window) - mu_ref * mu_est
    numerator = (2 * mu_ref * mu_est + c1) * (2 * covariance + c2)
    denominator = (mu_ref**2 + mu_est**2 + c1) * (var_ref + var_est + c2)
    return float(np.mean(numerator / denominator))
