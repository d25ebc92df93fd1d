"""Reading and writing images with errors that name the file.

Everything is normalised to uint8: gray images to (H, W), colour images to (H, W, 3).
Handled modes: gray ("L", "1"), gray with alpha ("LA": alpha dropped), RGB, RGBA (alpha
dropped, as OpenCV-based SR tools do), palette ("P", expanded to RGB or gray), CMYK and
YCbCr (converted to RGB), and 16-bit gray ("I;16", "I;16B", "I", scaled to 8 bits with
rounding: ``round(v / 257)``).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from asymsr.util.fs import atomic_path

MAX_PIXELS_ENV = "ASYMSR_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 200_000_000
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
    with _decoding(path), _open(path) as image:
        image.load()
        return _to_uint8_array(image, path)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels.

    Raises:
        ImageReadError: missing, not an image, or larger than :func:`max_pixels`.
    """
    path = Path(path)
    with _decoding(path), _open(path) as image:
        return image.height, image.width


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn what Pillow raises for a bad file into one :class:`ImageReadError` naming it."""
    try:
        yield
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error


def max_pixels() -> int:
    """The largest image (in pixels) that is decoded: ``ASYMSR_MAX_IMAGE_PIXELS``, default 200 M.

    A guard against decompression bombs (a small file that decodes to gigabytes); Pillow's own
    default (89 M) would refuse ordinary panoramas.
    """
    value = os.environ.get(MAX_PIXELS_ENV, str(DEFAULT_MAX_PIXELS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r}: expected a positive whole number of pixels")
    return int(value)


def _open(path: Path) -> Image.Image:
    """``Image.open`` with the pixel limit checked from the header (before any decoding)."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    limit = max_pixels()
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the check below replaces Pillow's warning-then-error pair
    try:
        image = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if image.width * image.height > limit:
        image.close()
        raise ImageReadError(
            f"{path}: {image.width}x{image.height} = {image.width * image.height:,} pixels exceeds the limit of "
            f"{limit:,} (a decompression-bomb guard); raise it with {MAX_PIXELS_ENV}=<pixels> if you trust the file"
        )
    return image


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


class PngStream:
    """Write a PNG band of rows at a time, so that a large image never sits whole in memory.

    Rows are filtered with PNG's "Up" filter (the difference to the row above, which photos
    compress well with) and deflated as they arrive. The file appears under its name only when
    :meth:`close` succeeds (a temporary sibling until then; removed on error by the caller's
    ``with`` block).
    """

    def __init__(self, path: str | os.PathLike[str], height: int, width: int, channels: int) -> None:
        if channels not in (1, 3) or height < 1 or width < 1:
            raise ValueError(f"PngStream: unsupported image {height}x{width}x{channels}")
        self.path, self.height, self.width, self.channels = Path(path), height, width, channels
        self.rows = 0
        self._previous = np.zeros(width * channels, dtype=np.uint8)
        self._deflate = zlib.compressobj(6)
        self._atomic = atomic_path(self.path)
        self._file = self._atomic.__enter__().open("wb")
        try:
            self._file.write(b"\x89PNG\r\n\x1a\n")
            self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0))
        except BaseException:
            self.abort()
            raise

    def write(self, rows: np.ndarray) -> None:
        """Append uint8 rows of shape (n, W) or (n, W, 3)."""
        flat = rows.reshape(len(rows), -1)
        if rows.dtype != np.uint8 or flat.shape[1] != self.width * self.channels:
            raise ValueError(f"PngStream: rows of {rows.dtype} {rows.shape} do not fit {self.width}x{self.channels}")
        if self.rows + len(flat) > self.height:
            raise ValueError(f"PngStream: more than {self.height} rows")
        above = np.vstack([self._previous[None], flat[:-1]])
        filtered = np.empty((len(flat), flat.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = 2  # filter type Up
        filtered[:, 1:] = flat - above  # uint8 arithmetic wraps modulo 256, as PNG's filter does
        self._idat(self._deflate.compress(filtered.tobytes()))
        self._previous = flat[-1].copy()
        self.rows += len(flat)

    def close(self) -> None:
        """Finish the file and give it its name; every row must have been written."""
        if self.rows != self.height:
            raise ValueError(f"PngStream: {self.rows} of {self.height} rows written")
        self._idat(self._deflate.flush())
        self._chunk(b"IEND", b"")
        self._file.close()
        atomic, self._atomic = self._atomic, None
        atomic.__exit__(None, None, None)  # renames the finished file onto its name

    def abort(self) -> None:
        """Drop the partial file (the target is left as it was); safe to call more than once."""
        self._file.close()
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> PngStream:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:  # disk full while finishing, say: no partial file is left behind
            self.abort()
            raise

    def _idat(self, data: bytes) -> None:
        if data:
            self._chunk(b"IDAT", data)

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._file.write(struct.pack(">I", len(data)) + kind + data)
        self._file.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
