"""Reading and writing images with errors that name the file.

Everything is normalised to uint8: gray images to (H, W), colour images to (H, W, 3).
Handled modes: gray ("L", "1"), gray with alpha ("LA": alpha dropped), RGB, RGBA (alpha
dropped, as OpenCV-based SR tools do), palette ("P", expanded to RGB or gray), CMYK and
YCbCr (converted to RGB), and 16-bit gray ("I;16", "I;16B", "I", scaled to 8 bits with
rounding: ``round(v / 257)``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from asymsr.util.fs import atomic_path

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or of an unsupported kind."""


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, case-insensitive), sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
        ValueError: ``folder`` holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` to uint8 (H, W) for gray or (H, W, 3) for colour.

    Raises:
        ImageReadError: the file is missing, not an image, truncated, or of an unsupported mode.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_uint8_array(image, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageReadError):
            raise
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error


def _to_uint8_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(f"{path}: integer image values outside [0, 65535] are not supported")
        return np.floor(values / 257.0 + 0.5).astype(np.uint8)
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, atomically (temporary name, then rename)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"write_png expects uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")
