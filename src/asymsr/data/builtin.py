"""The embedded default dataset: photographs shipped inside scikit-image's wheel.

They load without a network. The split is fixed by name (so it never changes with the
scikit-image version's ordering): ``test`` is held out for final evaluation only, ``val`` is
for validation PSNR, tuning and model selection, ``train`` for patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asymsr.util.images import write_png

SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "brick",
        "cell",
        "coins",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "page",
        "retina",
        "text",
    ),
    "val": ("chelsea", "clock"),
    "test": ("astronaut", "camera", "coffee", "rocket"),
}


def load_photo(name: str) -> np.ndarray:
    """The scikit-image photograph ``name`` as uint8 (H, W) or (H, W, 3)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype != np.uint8:
        raise TypeError(f"skimage.data.{name} is {image.dtype}, expected uint8")
    return image


def write_split(split: str, folder: Path) -> None:
    """Write the photographs of ``split`` as ``<name>.png`` into the existing ``folder``."""
    if split not in SPLITS:
        raise KeyError(f"unknown builtin split {split!r}; known: {sorted(SPLITS)}")
    for name in SPLITS[split]:
        write_png(folder / f"{name}.png", load_photo(name))
